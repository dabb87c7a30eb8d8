/* Channel conversions shared by the PNG and JPEG decoders (internal). */
#ifndef METACORE_PIXELS_H
#define METACORE_PIXELS_H

#include <stddef.h>
#include <stdint.h>

/* ITU-R 601 luma in PIL's fixed point (convert("L")): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
 * `rgb` and `gray` may not overlap. */
static inline void mc_rgb_to_gray(const uint8_t *rgb, uint8_t *gray, size_t count) {
    for (size_t i = 0; i < count; i++)
        gray[i] = (uint8_t)((19595u * rgb[3 * i] + 38470u * rgb[3 * i + 1] + 7471u * rgb[3 * i + 2] + 0x8000u) >> 16);
}

/* Spreads `count` gray values at the start of `pixels` to RGB triples in place (back to front). */
static inline void mc_gray_to_rgb(uint8_t *pixels, size_t count) {
    for (size_t i = count; i-- > 0;) {
        uint8_t v = pixels[i];
        pixels[3 * i] = pixels[3 * i + 1] = pixels[3 * i + 2] = v;
    }
}

#endif
