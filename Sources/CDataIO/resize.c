/* Area-filter resizing of 8-bit images, separable: a vertical pass into double rows, then a horizontal one. */
#include "dataio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The source pixels output cell `o` covers along one axis: cell o spans [o·s/d, (o+1)·s/d); source pixel i
 * gets the covered fraction of its width divided by the cell's width (the weights of a cell sum to 1). At most
 * ceil(s/d) + 1 pixels, from `first`; returns their count. */
static int cell(int s, int d, int o, int *first, double *w) {
    double scale = (double)s / d, lo = o * scale, hi = lo + scale;
    int begin = (int)floor(lo), end = (int)ceil(hi), n = 0;
    if (end > s) end = s;
    *first = begin;
    for (int i = begin; i < end; i++) {
        double overlap = fmin(hi, i + 1.0) - fmax(lo, (double)i);
        w[n++] = overlap > 0 ? overlap / scale : 0;
    }
    return n;
}

int mc_resize_area_u8(const uint8_t *src, int sh, int sw, int channels, uint8_t *dst, int dh, int dw, int invert,
                      char *error, size_t error_size) {
    if (sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || channels <= 0) {
        snprintf(error, error_size, "area resize from %dx%d to %dx%d of %d channels: sizes must be positive", sh, sw, dh, dw, channels);
        return -1;
    }
    int span_y = sh / dh + 2, span_x = sw / dw + 2;
    size_t row_count = (size_t)sw * channels;
    double *rows = malloc(sizeof(double) * (row_count + (size_t)span_y + (size_t)dw * span_x) + sizeof(int) * (size_t)dw * 2);
    if (!rows) {
        snprintf(error, error_size, "out of memory resizing %dx%d", sh, sw);
        return -1;
    }
    double *wy = rows + row_count, *wx = wy + span_y;
    int *x_first = (int *)(wx + (size_t)dw * span_x), *x_count = x_first + dw;
    for (int p = 0; p < dw; p++) x_count[p] = cell(sw, dw, p, &x_first[p], wx + (size_t)p * span_x);
    for (int o = 0; o < dh; o++) {
        int first, n = cell(sh, dh, o, &first, wy);
        for (size_t x = 0; x < row_count; x++) rows[x] = 0;
        for (int k = 0; k < n; k++) {
            double w = wy[k];
            if (w == 0) continue;
            const uint8_t *in = src + (size_t)(first + k) * row_count;
            for (size_t x = 0; x < row_count; x++) rows[x] += w * (invert ? 255 - in[x] : in[x]);
        }
        uint8_t *out = dst + (size_t)o * dw * channels;
        for (int p = 0; p < dw; p++) {
            const double *w = wx + (size_t)p * span_x;
            for (int c = 0; c < channels; c++) {
                double sum = 0;
                for (int k = 0; k < x_count[p]; k++) sum += w[k] * rows[(size_t)(x_first[p] + k) * channels + c];
                long v = lround(sum);
                out[(size_t)p * channels + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(rows);
    return 0;
}
