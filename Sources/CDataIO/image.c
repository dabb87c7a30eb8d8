/* Image format detection and dispatch to the PNG and JPEG decoders. */
#include "dataio.h"

#include <stdio.h>
#include <string.h>

mc_image_format mc_image_format_of(const uint8_t *data, size_t size) {
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size >= 8 && memcmp(data, png, 8) == 0) return MC_IMAGE_PNG;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return MC_IMAGE_JPEG;
    return MC_IMAGE_UNKNOWN;
}

static int unknown(char *error, size_t error_size) {
    snprintf(error, error_size, "not a PNG or JPEG image (its first bytes are neither signature)");
    return -1;
}

int mc_image_info(const uint8_t *data, size_t size, int *width, int *height, int *channels, char *error, size_t error_size) {
    switch (mc_image_format_of(data, size)) {
    case MC_IMAGE_PNG: return mc_png_info(data, size, width, height, channels, error, error_size);
    case MC_IMAGE_JPEG: return mc_jpeg_info(data, size, width, height, channels, error, error_size);
    default: return unknown(error, error_size);
    }
}

int mc_image_decode(const uint8_t *data, size_t size, int channels, int max_scans, uint8_t *pixels, int width, int height,
                    char *error, size_t error_size) {
    switch (mc_image_format_of(data, size)) {
    case MC_IMAGE_PNG: return mc_png_decode(data, size, channels, pixels, width, height, error, error_size);
    case MC_IMAGE_JPEG: return mc_jpeg_decode(data, size, channels, max_scans, pixels, width, height, error, error_size);
    default: return unknown(error, error_size);
    }
}

int mc_image_encode(mc_image_format format, const uint8_t *pixels, int width, int height, int channels, int quality,
                    int progressive, uint8_t **out, size_t *out_size, char *error, size_t error_size) {
    switch (format) {
    case MC_IMAGE_PNG: return mc_png_encode(pixels, width, height, channels, out, out_size, error, error_size);
    case MC_IMAGE_JPEG: return mc_jpeg_encode(pixels, width, height, channels, quality, progressive, out, out_size, error, error_size);
    default:
        snprintf(error, error_size, "images encode as PNG or JPEG");
        return -1;
    }
}
