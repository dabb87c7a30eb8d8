/* Read-only zip archives through libzip. */
#include "dataio.h"

#include <stdio.h>
#include <stdlib.h>
#include <zip.h>

struct mc_zip {
    zip_t *archive;
};

mc_zip *mc_zip_open(const char *path, char *error, size_t error_size) {
    int code = 0;
    zip_t *archive = zip_open(path, ZIP_RDONLY, &code);
    if (!archive) {
        zip_error_t reason;
        zip_error_init_with_code(&reason, code);
        snprintf(error, error_size, "cannot open zip archive %s: %s", path, zip_error_strerror(&reason));
        zip_error_fini(&reason);
        return NULL;
    }
    mc_zip *zip = malloc(sizeof *zip);
    if (!zip) {
        zip_discard(archive);
        snprintf(error, error_size, "out of memory opening %s", path);
        return NULL;
    }
    zip->archive = archive;
    return zip;
}

int64_t mc_zip_count(const mc_zip *zip) { return zip_get_num_entries(zip->archive, 0); }

const char *mc_zip_name(const mc_zip *zip, int64_t index) {
    if (index < 0) return NULL;
    return zip_get_name(zip->archive, (zip_uint64_t)index, ZIP_FL_ENC_GUESS);
}

int64_t mc_zip_size(const mc_zip *zip, int64_t index) {
    zip_stat_t stat;
    if (index < 0 || zip_stat_index(zip->archive, (zip_uint64_t)index, 0, &stat) != 0 || !(stat.valid & ZIP_STAT_SIZE))
        return -1;
    return (int64_t)stat.size;
}

int mc_zip_read(mc_zip *zip, int64_t index, uint8_t *buffer, int64_t size, char *error, size_t error_size) {
    zip_file_t *file = index >= 0 ? zip_fopen_index(zip->archive, (zip_uint64_t)index, 0) : NULL;
    if (!file) {
        snprintf(error, error_size, "cannot open entry %lld: %s", (long long)index, zip_strerror(zip->archive));
        return -1;
    }
    int64_t done = 0;
    while (done < size) {
        zip_int64_t n = zip_fread(file, buffer + done, (zip_uint64_t)(size - done));
        if (n <= 0) {
            snprintf(error, error_size, "entry %lld: %s after %lld of %lld bytes", (long long)index,
                     n < 0 ? zip_file_strerror(file) : "unexpected end of data", (long long)done, (long long)size);
            zip_fclose(file);
            return -1;
        }
        done += n;
    }
    /* libzip checks the entry's CRC only when a read reaches the end of the data: one more read, which
     * must return 0 bytes, is what reports a mismatch (or data beyond the size the directory claims). */
    uint8_t extra;
    zip_int64_t tail = zip_fread(file, &extra, 1);
    if (tail != 0) {
        snprintf(error, error_size, "entry %lld is corrupt: %s", (long long)index,
                 tail < 0 ? zip_file_strerror(file) : "more data than its recorded size");
        zip_fclose(file);
        return -1;
    }
    int status = zip_fclose(file);
    if (status != 0) {
        zip_error_t reason;
        zip_error_init_with_code(&reason, status);
        snprintf(error, error_size, "entry %lld is corrupt: %s", (long long)index, zip_error_strerror(&reason));
        zip_error_fini(&reason);
        return -1;
    }
    return 0;
}

void mc_zip_close(mc_zip *zip) {
    if (!zip) return;
    zip_discard(zip->archive); /* read-only: nothing to write back */
    free(zip);
}
