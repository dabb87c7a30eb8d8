/* CRC-32 through zlib. */
#include "dataio.h"

#include <zlib.h>

uint32_t mc_crc32(uint32_t crc, const uint8_t *data, size_t size) {
    /* zlib takes uInt lengths: feed large buffers in chunks. */
    while (size > 0) {
        uInt chunk = size > (1u << 30) ? (1u << 30) : (uInt)size;
        crc = (uint32_t)crc32(crc, data, chunk);
        data += chunk;
        size -= chunk;
    }
    return crc;
}
