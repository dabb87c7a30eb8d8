/* JPEG decoding and encoding through libjpeg-turbo's libjpeg API. Its errors arrive through error_exit, which
 * must not return: it longjmps back to the setjmp in the function that began the work, with the message
 * already written into the caller's buffer. */
#include "dataio.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "pixels.h"

/* What libjpeg's error manager carries here: where to jump, where the message goes, the scan limit. */
struct failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char *error;
    size_t error_size;
    int max_scans;
};

struct watch {
    struct jpeg_progress_mgr manager;
    struct failure *failure;
};

static void fail(j_common_ptr cinfo) {
    struct failure *failure = (struct failure *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, message);
    snprintf(failure->error, failure->error_size, "%s JPEG image: %s",
             cinfo->err->msg_code == JWRN_JPEG_EOF ? "truncated" : cinfo->is_decompressor ? "corrupt" : "cannot encode a",
             message);
    longjmp(failure->jump, 1);
}

/* Warnings (level −1) are tolerated, as PIL and browsers do, except the end of the data before the image's end:
 * libjpeg would fill the rest with gray. Trace messages (level ≥ 0) are ignored. */
static void emit(j_common_ptr cinfo, int level) {
    if (level < 0) {
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) fail(cinfo);
        cinfo->err->num_warnings++;
    }
}

static void quiet(j_common_ptr cinfo) { (void)cinfo; }

/* A progressive file may hold thousands of tiny scans, each a pass over the whole coefficient buffer. */
static void count_scans(j_common_ptr cinfo) {
    struct watch *watch = (struct watch *)cinfo->progress;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && d->input_scan_number > watch->failure->max_scans) {
        snprintf(watch->failure->error, watch->failure->error_size,
                 "JPEG image has more than %d progressive scans; refused as a decoding-time bomb", watch->failure->max_scans);
        longjmp(watch->failure->jump, 1);
    }
}

static void prepare(struct failure *failure, char *error, size_t error_size, int max_scans) {
    failure->error = error;
    failure->error_size = error_size;
    failure->max_scans = max_scans;
    jpeg_std_error(&failure->manager);
    failure->manager.error_exit = fail;
    failure->manager.emit_message = emit;
    failure->manager.output_message = quiet;
}

static int header_channels(J_COLOR_SPACE space) { return space == JCS_GRAYSCALE ? 1 : 3; }

int mc_jpeg_info(const uint8_t *data, size_t size, int *width, int *height, int *channels, char *error, size_t error_size) {
    struct jpeg_decompress_struct cinfo;
    struct failure failure;
    prepare(&failure, error, error_size, 0);
    cinfo.err = &failure.manager;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    *width = (int)cinfo.image_width;
    *height = (int)cinfo.image_height;
    *channels = header_channels(cinfo.jpeg_color_space);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* One output row of `components` samples per pixel to `channels`: CMYK (Adobe files store it inverted) to RGB
 * as PIL does, R = (255 − C)(255 − K)/255; RGB to gray by luma. */
static void convert_row(const JSAMPLE *row, int components, int inverted, uint8_t *out, int width, int channels) {
    if (components == 4) {
        for (int x = 0; x < width; x++) {
            const JSAMPLE *p = row + 4 * x;
            unsigned k = inverted ? p[3] : 255u - p[3];
            uint8_t rgb[3];
            for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)(((inverted ? p[c] : 255u - p[c]) * k + 127u) / 255u);
            if (channels == 3) memcpy(out + 3 * x, rgb, 3);
            else mc_rgb_to_gray(rgb, out + x, 1);
        }
    } else if (components == 3) {
        mc_rgb_to_gray(row, out, (size_t)width); /* channels == 1: a colour row read into a side buffer */
    }
}

int mc_jpeg_decode(const uint8_t *data, size_t size, int channels, int max_scans, uint8_t *pixels, int width, int height,
                   char *error, size_t error_size) {
    if (channels != 1 && channels != 3) {
        snprintf(error, error_size, "images decode to 1 or 3 channels, not %d", channels);
        return -1;
    }
    struct jpeg_decompress_struct cinfo;
    struct failure failure;
    struct watch watch;
    prepare(&failure, error, error_size, max_scans);
    cinfo.err = &failure.manager;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    watch.manager.progress_monitor = count_scans;
    watch.failure = &failure;
    cinfo.progress = &watch.manager;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if ((int)cinfo.image_width != width || (int)cinfo.image_height != height) {
        snprintf(error, error_size, "JPEG image is %ux%u, expected %dx%d", cinfo.image_width, cinfo.image_height, width, height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    int gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    cinfo.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int components = cinfo.output_components;
    /* Rows go straight into `pixels` when they already have its layout (or are gray, spread afterwards). */
    int direct = gray || (components == 3 && channels == 3);
    JSAMPARRAY side = direct ? NULL
        : (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)width * components, 1);
    size_t stride = (size_t)width * channels;
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *out = pixels + (size_t)cinfo.output_scanline * stride;
        JSAMPROW row = direct ? out : side[0];
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (!direct) convert_row(side[0], components, cinfo.saw_Adobe_marker, out, width, channels);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (gray && channels == 3)
        for (int y = height; y-- > 0;) mc_gray_to_rgb(pixels + (size_t)y * stride, (size_t)width);
    return 0;
}

/* The encoder's work, in a frame of its own so that the output buffer (written by libjpeg) is not an automatic
 * variable of the function that calls setjmp. */
static int compress(const uint8_t *pixels, int width, int height, int channels, int quality, int progressive, unsigned char **buffer,
                    unsigned long *size, char *error, size_t error_size) {
    struct jpeg_compress_struct cinfo;
    struct failure failure;
    prepare(&failure, error, error_size, 0);
    cinfo.err = &failure.manager;
    if (setjmp(failure.jump)) {
        jpeg_destroy_compress(&cinfo);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, buffer, size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 4 ? JCS_CMYK : channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (progressive) jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}

int mc_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality, int progressive,
                   uint8_t **out, size_t *out_size, char *error, size_t error_size) {
    if ((channels != 1 && channels != 3 && channels != 4) || width <= 0 || height <= 0 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION
        || quality < 1 || quality > 100) {
        snprintf(error, error_size, "cannot encode a %dx%d image of %d channels at quality %d as JPEG", width, height, channels, quality);
        return -1;
    }
    unsigned char *buffer = NULL;
    unsigned long size = 0;
    if (compress(pixels, width, height, channels, quality, progressive, &buffer, &size, error, error_size) != 0) {
        free(buffer);
        return -1;
    }
    *out = buffer;
    *out_size = size;
    return 0;
}
