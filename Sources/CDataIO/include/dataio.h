/*
 * CDataIO — reading image datasets as their users download them: zip archives (libzip), PNG images
 * (libpng's simplified API), area-filter resizing and CRC-32 checksums (zlib).
 *
 * Every function that can fail returns 0 on success and -1 on failure, with a message naming the problem
 * written into the caller's `error` buffer (`error_size` bytes, always NUL-terminated). No global state.
 *
 * Images are 8-bit grayscale, row-major (row 0 at the top), one byte per pixel, `width` bytes per row.
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

/* ---- PNG ---- */

/* Width and height of the PNG image in `data[0 ..< size]`, from its header. */
int mc_png_size(const uint8_t *data, size_t size, int *width, int *height, char *error, size_t error_size);
/* Decodes the PNG image in `data` to 8-bit gray (any colour type and bit depth is converted; 1-bit images
 * become 0/255) into `pixels`, which holds `width * height` bytes as given by mc_png_size. */
int mc_png_read_gray(const uint8_t *data, size_t size, uint8_t *pixels, int width, int height,
                     char *error, size_t error_size);

/* ---- Resizing ---- */

/* Area (box) filter resize of a gray image `src` [sh, sw] to `dst` [dh, dw]: each output pixel is the mean of
 * the source area it covers, partial pixels weighted by their covered fraction — the antialiasing filter of
 * OpenCV's INTER_AREA and PIL's BOX. With `invert`, v becomes 255 − v first. Rounded to nearest.
 * Requires dh <= sh and dw <= sw (a downscale). */
int mc_resize_area_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, int invert,
                      char *error, size_t error_size);

/* ---- Checksums ---- */

/* CRC-32 (zlib's polynomial) of `data[0 ..< size]`, continuing from `crc` (start with 0). */
uint32_t mc_crc32(uint32_t crc, const uint8_t *data, size_t size);

#endif
