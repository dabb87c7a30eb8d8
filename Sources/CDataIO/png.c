/* PNG decoding and encoding through libpng's simplified API. */
#include "dataio.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pixels.h"

static int begin(png_image *image, const uint8_t *data, size_t size, char *error, size_t error_size) {
    memset(image, 0, sizeof *image);
    image->version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(image, data, size)) {
        snprintf(error, error_size, "not a readable PNG image: %s", image->message);
        png_image_free(image);
        return -1;
    }
    return 0;
}

int mc_png_info(const uint8_t *data, size_t size, int *width, int *height, int *channels, char *error, size_t error_size) {
    png_image image;
    if (begin(&image, data, size, error, error_size) != 0) return -1;
    *width = (int)image.width;
    *height = (int)image.height;
    *channels = (image.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    png_image_free(&image);
    return 0;
}

int mc_png_decode(const uint8_t *data, size_t size, int channels, uint8_t *pixels, int width, int height,
                  char *error, size_t error_size) {
    if (channels != 1 && channels != 3) {
        snprintf(error, error_size, "images decode to 1 or 3 channels, not %d", channels);
        return -1;
    }
    png_image image;
    if (begin(&image, data, size, error, error_size) != 0) return -1;
    if ((int)image.width != width || (int)image.height != height) {
        snprintf(error, error_size, "PNG image is %ux%u, expected %dx%d", image.width, image.height, width, height);
        png_image_free(&image);
        return -1;
    }
    /* Colour decoded as RGB even when gray is asked for, so that its gray is the same formula as a JPEG's
     * (libpng's own conversion works in linear light). Gray stays gray. */
    int colour = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
    size_t count = (size_t)width * height;
    uint8_t *target = pixels;
    if (colour && channels == 1) {
        target = malloc(count * 3);
        if (!target) {
            snprintf(error, error_size, "out of memory decoding a %dx%d PNG image", width, height);
            png_image_free(&image);
            return -1;
        }
    }
    int stored = colour ? 3 : 1;
    memset(target, 0, count * stored); /* what alpha is composited on: black */
    image.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_finish_read(&image, NULL, target, width * stored, NULL)) {
        snprintf(error, error_size, "corrupt PNG image: %s", image.message);
        png_image_free(&image);
        if (target != pixels) free(target);
        return -1;
    }
    if (colour && channels == 1) {
        mc_rgb_to_gray(target, pixels, count);
        free(target);
    } else if (!colour && channels == 3) {
        mc_gray_to_rgb(pixels, count);
    }
    return 0;
}

int mc_png_encode(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *out_size,
                  char *error, size_t error_size) {
    if ((channels != 1 && channels != 3) || width <= 0 || height <= 0) {
        snprintf(error, error_size, "cannot encode a %dx%d image of %d channels", width, height, channels);
        return -1;
    }
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, width * channels, NULL)) {
        snprintf(error, error_size, "cannot encode PNG: %s", image.message);
        return -1;
    }
    uint8_t *buffer = malloc(size);
    if (!buffer) {
        snprintf(error, error_size, "out of memory encoding PNG");
        return -1;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, width * channels, NULL)) {
        snprintf(error, error_size, "cannot encode PNG: %s", image.message);
        free(buffer);
        return -1;
    }
    *out = buffer;
    *out_size = size;
    return 0;
}
