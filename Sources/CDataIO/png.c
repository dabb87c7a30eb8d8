/* PNG decoding through libpng's simplified API. */
#include "dataio.h"

#include <png.h>
#include <stdio.h>
#include <string.h>

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

int mc_png_size(const uint8_t *data, size_t size, int *width, int *height, char *error, size_t error_size) {
    png_image image;
    if (begin(&image, data, size, error, error_size) != 0) return -1;
    *width = (int)image.width;
    *height = (int)image.height;
    png_image_free(&image);
    return 0;
}

int mc_png_read_gray(const uint8_t *data, size_t size, uint8_t *pixels, int width, int height,
                     char *error, size_t error_size) {
    png_image image;
    if (begin(&image, data, size, error, error_size) != 0) return -1;
    if ((int)image.width != width || (int)image.height != height) {
        snprintf(error, error_size, "PNG image is %ux%u, expected %dx%d", image.width, image.height, width, height);
        png_image_free(&image);
        return -1;
    }
    image.format = PNG_FORMAT_GRAY;
    if (!png_image_finish_read(&image, NULL, pixels, width, NULL)) {
        snprintf(error, error_size, "corrupt PNG image: %s", image.message);
        png_image_free(&image);
        return -1;
    }
    return 0;
}
