/*
 * CDataIO — reading image datasets as their users download them: zip archives (libzip), PNG (libpng's
 * simplified API) and JPEG (libjpeg-turbo) images, area-filter resizing and CRC-32 checksums (zlib).
 *
 * Every function that can fail returns 0 on success and -1 on failure, with a message naming the problem
 * written into the caller's `error` buffer (`error_size` bytes, always NUL-terminated). No global state.
 *
 */
#ifndef METACORE_DATAIO_H
#define METACORE_DATAIO_H

#include <stddef.h>
#include <stdint.h>

/* ---- Zip archives (read-only) ---- */

/* An open archive; opaque. */
typedef struct mc_zip mc_zip;

/* Opens the zip archive at `path` for reading; NULL on failure. */
mc_zip *mc_zip_open(const char *path, char *error, size_t error_size);
/* Number of entries (files and directories) in the archive. */
int64_t mc_zip_count(const mc_zip *zip);
/* Name of entry `index` ("dir/sub/file.png"; directories end in '/'); NULL if out of range. Owned by the archive. */
const char *mc_zip_name(const mc_zip *zip, int64_t index);
/* Uncompressed size of entry `index` in bytes, or -1. */
int64_t mc_zip_size(const mc_zip *zip, int64_t index);
/* Decompresses entry `index` into `buffer` (exactly `size` bytes, its uncompressed size). */
/* Reads entry `index`, exactly `size` bytes (its recorded size), into `buffer` and checks its CRC-32;
 * 0 on success, -1 with a message naming the problem. */
int mc_zip_read(mc_zip *zip, int64_t index, uint8_t *buffer, int64_t size, char *error, size_t error_size);
/* Closes the archive (NULL is ignored). */
void mc_zip_close(mc_zip *zip);

/* ---- Images: PNG (libpng's simplified API) and JPEG (libjpeg-turbo) ---- */

/* Pixel layout of every image here: 8 bits per sample, row-major (row 0 at the top), the channels of a pixel
 * interleaved — gray (1 channel) or R, G, B (3 channels); `width * channels` bytes per row. */

typedef enum { MC_IMAGE_UNKNOWN = 0, MC_IMAGE_PNG = 1, MC_IMAGE_JPEG = 2 } mc_image_format;

/* The format of `data` from its signature (PNG's 8 bytes, JPEG's FF D8 FF); MC_IMAGE_UNKNOWN otherwise. */
mc_image_format mc_image_format_of(const uint8_t *data, size_t size);

/* From the header alone (nothing is decoded or allocated for the pixels): width, height and the channels the
 * image stores in colour — 1 for gray (with or without alpha), 3 for colour (RGB, palette, YCbCr, CMYK). */
int mc_image_info(const uint8_t *data, size_t size, int *width, int *height, int *channels, char *error, size_t error_size);

/* Decodes the PNG or JPEG image in `data` into `pixels` (`width * height * channels` bytes; width and height as
 * mc_image_info reports them) with `channels` 1 or 3:
 *  - colour to gray: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 of the decoded RGB (ITU-R 601 luma in
 *    PIL's fixed point, as its convert("L")), for PNG and JPEG alike; gray to colour repeats the gray value;
 *  - alpha is dropped (a PNG's pixels are composited on black);
 *  - PNG: any bit depth and colour type, through libpng's simplified API (1-bit gray becomes 0/255; 16-bit
 *    samples, which it takes for linear light, are encoded as sRGB);
 *  - JPEG: baseline and progressive, any colour space libjpeg reads (CMYK and YCCK converted to RGB, Adobe's
 *    inverted CMYK recognised); a file that ends before its image data does fails ("truncated"), other
 *    warnings are tolerated; more than `max_scans` progressive scans fail (a CPU-time bomb).
 */
int mc_image_decode(const uint8_t *data, size_t size, int channels, int max_scans, uint8_t *pixels, int width, int height,
                    char *error, size_t error_size);

/* Encodes `pixels` (`channels` 1 or 3; for JPEG also 4, CMYK samples written as given with libjpeg's Adobe
 * marker) as PNG or JPEG (`quality` 1-100 and `progressive` apply to JPEG only) into a buffer from malloc,
 * returned in `*out` with its size in `*out_size`; the caller frees it. For tests and sample data. */
int mc_image_encode(mc_image_format format, const uint8_t *pixels, int width, int height, int channels, int quality,
                    int progressive, uint8_t **out, size_t *out_size, char *error, size_t error_size);

/* The PNG and JPEG halves of the above (mc_image_* dispatch on the signature). */
int mc_png_info(const uint8_t *data, size_t size, int *width, int *height, int *channels, char *error, size_t error_size);
int mc_png_decode(const uint8_t *data, size_t size, int channels, uint8_t *pixels, int width, int height,
                  char *error, size_t error_size);
int mc_png_encode(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *out_size,
                  char *error, size_t error_size);
int mc_jpeg_info(const uint8_t *data, size_t size, int *width, int *height, int *channels, char *error, size_t error_size);
int mc_jpeg_decode(const uint8_t *data, size_t size, int channels, int max_scans, uint8_t *pixels, int width, int height,
                   char *error, size_t error_size);
int mc_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality, int progressive,
                   uint8_t **out, size_t *out_size, char *error, size_t error_size);

/* ---- Resizing ---- */

/* Area (box) filter resize of `src` [sh, sw, channels] to `dst` [dh, dw, channels]: each output pixel is the
 * mean of the source area it covers, partial pixels weighted by their covered fraction — OpenCV's INTER_AREA
 * and PIL's BOX when shrinking; when enlarging, each output pixel takes the source pixel it lies in, blended
 * where it straddles two. With `invert`, v becomes 255 − v first. Rounded to nearest. Cost is linear in the
 * source and output sizes. */
int mc_resize_area_u8(const uint8_t *src, int sh, int sw, int channels, uint8_t *dst, int dh, int dw, int invert,
                      char *error, size_t error_size);

/* ---- Checksums ---- */

/* CRC-32 (zlib's polynomial) of `data[0 ..< size]`, continuing from `crc` (start with 0). */
uint32_t mc_crc32(uint32_t crc, const uint8_t *data, size_t size);

#endif
