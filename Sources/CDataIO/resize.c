/* Area-filter downscaling of 8-bit gray images. */
#include "dataio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Row-major weights [d, s]: w[o][i] is the fraction of output cell o's area [o·s/d, (o+1)·s/d) that source
 * pixel i covers, divided by the cell's width — each row sums to 1. */
static void area_weights(int s, int d, double *w) {
    double scale = (double)s / d;
    for (int o = 0; o < d; o++) {
        double lo = o * scale, hi = lo + scale;
        for (int i = 0; i < s; i++) {
            double overlap = fmin(hi, i + 1.0) - fmax(lo, (double)i);
            w[(size_t)o * s + i] = overlap > 0 ? overlap / scale : 0;
        }
    }
}

int mc_resize_area_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, int invert,
                      char *error, size_t error_size) {
    if (sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || dh > sh || dw > sw) {
        snprintf(error, error_size, "area resize goes from %dx%d down to %dx%d; it needs positive sizes and no upscaling",
                 sh, sw, dh, dw);
        return -1;
    }
    double *wy = malloc(sizeof(double) * ((size_t)dh * sh + (size_t)dw * sw + (size_t)dh * sw));
    if (!wy) {
        snprintf(error, error_size, "out of memory resizing %dx%d", sh, sw);
        return -1;
    }
    double *wx = wy + (size_t)dh * sh, *rows = wx + (size_t)dw * sw;
    area_weights(sh, dh, wy);
    area_weights(sw, dw, wx);
    /* Vertical pass into rows [dh, sw], then horizontal into dst [dh, dw]. */
    for (int o = 0; o < dh; o++) {
        double *row = rows + (size_t)o * sw;
        for (int x = 0; x < sw; x++) row[x] = 0;
        for (int i = 0; i < sh; i++) {
            double w = wy[(size_t)o * sh + i];
            if (w == 0) continue;
            const uint8_t *in = src + (size_t)i * sw;
            for (int x = 0; x < sw; x++) row[x] += w * (invert ? 255 - in[x] : in[x]);
        }
    }
    for (int o = 0; o < dh; o++)
        for (int p = 0; p < dw; p++) {
            double sum = 0;
            for (int x = 0; x < sw; x++) sum += wx[(size_t)p * sw + x] * rows[(size_t)o * sw + x];
            long v = lround(sum);
            dst[(size_t)o * dw + p] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    free(wy);
    return 0;
}
