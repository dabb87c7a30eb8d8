/* The LSTM cell, fused: from the gates' pre-activations and the previous cell state to the new hidden and cell
 * states, with its backward and R-operator passes. Per sample, a = z [4H] (input, forget, cell, output gates),
 * c [H]; y [2H] = (h', c'). */
#include "ckernels.h"
#include <math.h>

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* The cell's values at (sample, unit): gates, previous and new state, and the new state's tanh. `saved` holds
 * per sample (i, f, g, o, tanh c') [5H], written by the forward pass. */
typedef struct { float i, f, g, o, c, cn, t; } cell;

static inline cell values(int h, const float *saved, const float *c, const float *y, size_t s, int j) {
    const float *a = saved + s * 5 * h;
    cell v;
    v.i = a[j]; v.f = a[h + j]; v.g = a[2 * h + j]; v.o = a[3 * h + j]; v.t = a[4 * h + j];
    v.c = c[s * h + j];
    v.cn = y[s * 2 * h + h + j];
    return v;
}

void mc_lstm_cell_forward(int n, int h, const float *z, const float *c, float *y, float *saved) {
    for (size_t s = 0; s < (size_t)n; s++) {
        const float *a = z + s * 4 * h;
        float *keep = saved + s * 5 * h;
        for (int j = 0; j < 4 * h; j++) keep[j] = j >= 2 * h && j < 3 * h ? tanhf(a[j]) : sigmoid(a[j]);
        for (int j = 0; j < h; j++) {
            const float cn = keep[h + j] * c[s * h + j] + keep[j] * keep[2 * h + j], t = tanhf(cn);
            keep[4 * h + j] = t;
            y[s * 2 * h + j] = keep[3 * h + j] * t;
            y[s * 2 * h + h + j] = cn;
        }
    }
}

void mc_lstm_cell_backward(int n, int h, const float *saved, const float *c, const float *y, const float *dy, float *dz,
                           float *dc) {
    for (size_t s = 0; s < (size_t)n; s++)
        for (int j = 0; j < h; j++) {
            const cell v = values(h, saved, c, y, s, j);
            const float dh = dy[s * 2 * h + j], dct = dy[s * 2 * h + h + j] + dh * v.o * (1 - v.t * v.t);
            float *d = dz ? dz + s * 4 * h : NULL;
            if (d) {
                d[j] = dct * v.g * v.i * (1 - v.i);
                d[h + j] = dct * v.c * v.f * (1 - v.f);
                d[2 * h + j] = dct * v.i * (1 - v.g * v.g);
                d[3 * h + j] = dh * v.t * v.o * (1 - v.o);
            }
            if (dc) dc[s * h + j] = dct * v.f;
        }
}

/* The R-derivatives of the gates (from Rz) and of the previous state (Rc); NULL stands for zero. */
typedef struct { float i, f, g, o, c; } cell_r;

static inline cell_r directional(int h, const float *Rz, const float *Rc, size_t s, int j, cell v) {
    const float *R = Rz ? Rz + s * 4 * h : NULL;
    cell_r r;
    r.i = R ? v.i * (1 - v.i) * R[j] : 0; r.f = R ? v.f * (1 - v.f) * R[h + j] : 0;
    r.g = R ? (1 - v.g * v.g) * R[2 * h + j] : 0; r.o = R ? v.o * (1 - v.o) * R[3 * h + j] : 0;
    r.c = Rc ? Rc[s * h + j] : 0;
    return r;
}

void mc_lstm_cell_rforward(int n, int h, const float *saved, const float *Rz, const float *c, const float *Rc,
                           const float *y, float *Ry) {
    for (size_t s = 0; s < (size_t)n; s++)
        for (int j = 0; j < h; j++) {
            const cell v = values(h, saved, c, y, s, j);
            const cell_r r = directional(h, Rz, Rc, s, j, v);
            const float Ri = r.i, Rf = r.f, Rg = r.g, Ro = r.o, Rcp = r.c;
            const float Rcn = Rf * v.c + v.f * Rcp + Ri * v.g + v.i * Rg, Rt = (1 - v.t * v.t) * Rcn;
            Ry[s * 2 * h + j] = Ro * v.t + v.o * Rt;
            Ry[s * 2 * h + h + j] = Rcn;
        }
}

void mc_lstm_cell_rbackward(int n, int h, const float *saved, const float *Rz, const float *c, const float *Rc,
                            const float *y, const float *Ry, const float *dy, const float *Rdy, float *Rdz,
                            float *Rdc) {
    for (size_t s = 0; s < (size_t)n; s++)
        for (int j = 0; j < h; j++) {
            const cell v = values(h, saved, c, y, s, j);
            const cell_r r = directional(h, Rz, Rc, s, j, v);
            const float Ri = r.i, Rf = r.f, Rg = r.g, Ro = r.o, Rcp = r.c;
            const float Rt = (1 - v.t * v.t) * Ry[s * 2 * h + h + j];
            const float dh = dy[s * 2 * h + j], Rdh = Rdy[s * 2 * h + j];
            const float sech2 = 1 - v.t * v.t;
            const float dct = dy[s * 2 * h + h + j] + dh * v.o * sech2;
            const float Rdct = Rdy[s * 2 * h + h + j] + Rdh * v.o * sech2 + dh * Ro * sech2 - 2 * dh * v.o * v.t * Rt;
            if (Rdz) {
                float *R = Rdz + s * 4 * h;
                const float di = dct * v.g, Rdi = Rdct * v.g + dct * Rg;
                R[j] = Rdi * v.i * (1 - v.i) + di * (1 - 2 * v.i) * Ri;
                const float df = dct * v.c, Rdf = Rdct * v.c + dct * Rcp;
                R[h + j] = Rdf * v.f * (1 - v.f) + df * (1 - 2 * v.f) * Rf;
                const float dg = dct * v.i, Rdg = Rdct * v.i + dct * Ri;
                R[2 * h + j] = Rdg * (1 - v.g * v.g) - 2 * dg * v.g * Rg;
                const float dO = dh * v.t, RdO = Rdh * v.t + dh * Rt;
                R[3 * h + j] = RdO * v.o * (1 - v.o) + dO * (1 - 2 * v.o) * Ro;
            }
            if (Rdc) Rdc[s * h + j] = Rdct * v.f + dct * Rf;
        }
}
