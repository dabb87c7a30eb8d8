import CKernels
import Testing
@testable import MetaCore

/// Kernel-level properties the model-level derivative tests cannot see.
@Suite("CKernels")
struct KernelTests {
    /// C = alpha op(A) op(B) + beta C in double, from the stored layouts.
    func naiveGemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: [Float], _ lda: Int,
                   _ b: [Float], _ ldb: Int, _ beta: Float, _ c: [Float], _ ldc: Int) -> [Float] {
        var out = c
        for i in 0 ..< m {
            for j in 0 ..< n {
                var acc = 0.0
                for p in 0 ..< k {
                    let x = ta ? a[p * lda + i] : a[i * lda + p], y = tb ? b[j * ldb + p] : b[p * ldb + j]
                    acc += Double(x) * Double(y)
                }
                out[i * ldc + j] = Float(Double(alpha) * acc + Double(beta) * Double(c[i * ldc + j]))
            }
        }
        return out
    }

    /// The kernel benchmark's MLP products are the shapes mc_linear_forward / mc_linear_backward pass to mc_gemm
    /// (x·Wᵀ, dy·W, dyᵀ·x), with no data gradient for the first layer, and each is timed with a rate.
    @Test func mlpBenchmarkTimesTheLinearLayersProducts() {
        let timings = KernelBenchmarks.mlpGemms(sizes: [1, 40, 3], points: 10, threads: 1, repetitions: 1)
        #expect(timings.map(\.name) == ["mlp layer 1 forward 10x40x1 (NT)", "mlp layer 1 weight grad 40x1x10 (TN)",
                                        "mlp layer 2 forward 10x3x40 (NT)", "mlp layer 2 data grad 10x40x3",
                                        "mlp layer 2 weight grad 3x40x10 (TN)"])
        #expect(timings.allSatisfy { ($0.gflops ?? 0) > 0 && $0.seconds > 0 })
    }

    /// Shapes for the loop kernel (4-row blocks with 1, 2 and 3 rows left over; 16- and 8-column tiles and single
    /// columns; for B transposed, dot products when C is narrow and packing otherwise; for A transposed and C
    /// narrow, columns of C a vector of rows at a time) and for cblas (beyond the loop kernel's size, or a
    /// transposed B too large to pack), with beta 0 (C is not read: NaNs there must not leak), 1 and 0.5.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func gemmMatchesNaiveProductInEveryTransposeWithStridesAndAccumulation(_ t: (Bool, Bool)) {
        for (m, n, k) in Self.gemmShapes {
            for (alpha, beta): (Float, Float) in [(0.75, 0.5), (1, 0), (-1, 1)] {
                // Stored shapes with padded row strides (lda > logical width) to exercise the leading dimensions.
                let (aRows, aCols) = t.0 ? (k, m) : (m, k), (bRows, bCols) = t.1 ? (n, k) : (k, n)
                let (lda, ldb, ldc) = (aCols + 2, bCols + 3, n + 1)
                var random = RandomSource(seed: 5)
                let a = random.normals(aRows * lda), b = random.normals(bRows * ldb)
                var c = random.normals(m * ldc)
                if beta == 0 { for i in 0 ..< m { c[i * ldc] = .nan } }
                var result = c
                mc_gemm(t.0 ? 1 : 0, t.1 ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, &result, Int32(ldc))
                let expected = naiveGemm(t.0, t.1, m, n, k, alpha, a, lda, b, ldb, beta == 0 ? 0 : beta, beta == 0 ? [Float](repeating: 0, count: c.count) : c, ldc)
                var worst: Float = 0
                for i in 0 ..< m {
                    for j in 0 ..< n { worst = max(worst, abs(result[i * ldc + j] - expected[i * ldc + j])) }
                    // Padding columns of C are untouched.
                    for j in n ..< ldc { #expect(result[i * ldc + j] == c[i * ldc + j]) }
                }
                #expect(worst < 1e-3, "\(m)x\(n)x\(k) alpha \(alpha) beta \(beta): max error \(worst)")
            }
        }
    }

    /// Every tile of both widths of the loop kernel (16- and 8-column tiles; 64-column ones, and after them every
    /// count of 16-column vectors with and without an 8-column half; single columns; 4-row blocks and 1 - 3 rows
    /// left over; narrow products by 16, 8 and single rows), and products beyond it.
    static let gemmShapes = [(7, 5, 9), (6, 45, 11), (3, 8, 2), (9, 3, 37), (5, 21, 37), (40, 60, 50), (20, 80, 60),
                             (70, 90, 80), (33, 64, 64), (9, 121, 37), (40, 1, 10), (19, 2, 5), (10, 40, 40), (5, 27, 6),
                             (6, 34, 7), (3, 50, 9)]

    /// Whether the loop kernel runs sixteen-float tiles on this CPU.
    static let hasWideLoopKernel: Bool = {
        var c: [Float] = [0]
        return mc_gemm_loop(16, 0, 0, 1, 1, 1, 1, [1], 1, [1], 1, 0, &c, 1) == 1
    }()

    /// The loop kernel's AVX-512 tiles compute each entry by the same chain of multiply-adds as its eight-float ones
    /// (where the build runs the FMA clones; within rounding of them otherwise), in every transpose.
    @Test(.enabled(if: Self.hasWideLoopKernel, "this CPU has no AVX-512"),
          arguments: [(false, false), (false, true), (true, false), (true, true)])
    func gemmLoopKernelAgreesAtBothWidths(_ t: (Bool, Bool)) {
        for (m, n, k) in Self.gemmShapes {
            let (aRows, aCols) = t.0 ? (k, m) : (m, k), (bRows, bCols) = t.1 ? (n, k) : (k, n)
            let (lda, ldb, ldc) = (aCols + 1, bCols + 2, n + 3)
            var random = RandomSource(seed: 7)
            let a = random.normals(aRows * lda), b = random.normals(bRows * ldb), c = random.normals(m * ldc)
            var narrow = c, wide = c
            let taken8 = mc_gemm_loop(8, t.0 ? 1 : 0, t.1 ? 1 : 0, Int32(m), Int32(n), Int32(k), 0.75, a, Int32(lda), b, Int32(ldb), 0.5, &narrow, Int32(ldc))
            let taken16 = mc_gemm_loop(16, t.0 ? 1 : 0, t.1 ? 1 : 0, Int32(m), Int32(n), Int32(k), 0.75, a, Int32(lda), b, Int32(ldb), 0.5, &wide, Int32(ldc))
            #expect(taken8 == taken16, "\(m)x\(n)x\(k)")
            if mc_fma_clones() == 1 { #expect(narrow == wide, "\(m)x\(n)x\(k)") }
            else { #expect(zip(narrow, wide).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($0)) }, "\(m)x\(n)x\(k)") }
            if taken16 == 0 { #expect(wide == c, "a shape the kernel refuses leaves C alone") }
        }
    }

    @Test func batchedGemmIsEachProductInTurn() {
        let (count, m, n, k) = (3, 4, 3, 5)
        var random = RandomSource(seed: 6)
        let a = random.normals(count * m * k), b = random.normals(count * k * n)
        var c = [Float](repeating: 0, count: count * m * n)
        mc_gemm_batched(Int32(count), 0, 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), m * k, b, Int32(n), k * n, 0, &c, Int32(n), m * n)
        for i in 0 ..< count {
            let expected = naiveGemm(false, false, m, n, k, 1, Array(a[i * m * k ..< (i + 1) * m * k]), k,
                                     Array(b[i * k * n ..< (i + 1) * k * n]), n, 0, [Float](repeating: 0, count: m * n), n)
            for j in 0 ..< m * n { #expect(abs(c[i * m * n + j] - expected[j]) < 1e-4) }
        }
    }

    @Test func gemmWithEmptyInnerDimensionScalesC() {
        var c: [Float] = [1, 2, 3, 4]
        mc_gemm(0, 0, 2, 2, 0, 1, [], 1, [], 2, 0.5, &c, 2)
        #expect(c == [0.5, 1, 1.5, 2])
    }

    /// Convolution processes the batch in chunks of images per GEMM; every chunk size must give the same
    /// forward, backward and R-form results (the last chunk may be partial). Where Winograd applies (3x3,
    /// stride 1, pad 1) it must agree with im2col on all of them at both tile sizes, partial tiles and partial
    /// blocks of eight channels and filters included; so must the direct algorithm at stride 1, for any kernel
    /// and padding, partial blocks of output channels and output columns included, and im2row everywhere (the
    /// default for strided layers of 8 channels or more).
    @Test(arguments: [(5, 3, 7, 6, 4, 3, 2, 1), (5, 3, 7, 6, 4, 3, 1, 1), (4, 5, 6, 6, 3, 3, 1, 1), (3, 2, 2, 3, 5, 3, 1, 1),
                      (3, 10, 9, 5, 11, 3, 1, 1), (2, 1, 11, 19, 6, 3, 1, 1), (2, 3, 9, 10, 5, 5, 1, 2), (2, 2, 6, 7, 3, 3, 1, 0),
                      (2, 1, 5, 5, 4, 1, 1, 0), (2, 12, 9, 13, 10, 3, 1, 1), (3, 9, 8, 7, 6, 3, 2, 1), (2, 8, 9, 11, 5, 3, 2, 0),
                      (3, 10, 7, 7, 4, 2, 3, 1), (2, 8, 5, 16, 8, 3, 1, 1)])
    func convolutionIsIndependentOfChunkingAndAlgorithm(_ g: (Int, Int, Int, Int, Int, Int, Int, Int)) {
        let (n, c, h, w, o, k, stride, pad) = g
        var random = RandomSource(seed: 8)
        var shape = mc_conv2d_shape()
        _ = mc_conv2d_shape_make(&shape, Int32(n), Int32(c), Int32(h), Int32(w), Int32(o), Int32(k), Int32(k), Int32(stride), Int32(pad))
        let outCount = n * o * Int(shape.oh * shape.ow), weights = o * c * k * k
        let x = random.normals(n * c * h * w), rx = random.normals(n * c * h * w)
        let wt = random.normals(weights), vw = random.normals(weights), b = random.normals(o), vb = random.normals(o)
        let dy = random.normals(outCount), rdy = random.normals(outCount)

        func run(_ algorithm: Int32, chunk: Int?) -> [[Float]] {
            var s = shape
            #expect(mc_conv2d_shape_set_algorithm(&s, algorithm) == 0)
            if let chunk { s.chunk = Int32(chunk) }
            var ws = [Float](repeating: .nan, count: mc_conv2d_workspace_size(&s))
            var y = [Float](repeating: .nan, count: outCount), ry = y
            var dx = [Float](repeating: .nan, count: x.count), dw = [Float](repeating: .nan, count: weights)
            var db = [Float](repeating: .nan, count: o)
            var rdx = dx, rdw = dw, rdb = db, ryNoRx = ry, rdwNoRx = rdw
            mc_conv2d_forward(&s, x, wt, b, &y, &ws)
            mc_conv2d_backward(&s, x, wt, dy, &dx, &dw, &db, &ws)
            mc_conv2d_rforward(&s, x, rx, wt, vw, vb, &ry, &ws)
            mc_conv2d_rbackward(&s, x, rx, wt, vw, dy, rdy, &rdx, &rdw, &rdb, &ws)
            mc_conv2d_rforward(&s, x, nil, wt, vw, vb, &ryNoRx, &ws)
            mc_conv2d_rbackward(&s, x, nil, wt, vw, dy, rdy, nil, &rdwNoRx, &rdb, &ws)
            return [y, dx, dw, db, ry, rdx, rdw, rdb, ryNoRx, rdwNoRx]
        }
        let reference = run(Int32(MC_CONV_IM2COL), chunk: nil)
        let winograd = k == 3 && stride == 1 && pad == 1 && h >= 2 && w >= 2
        let tiles = [Int32(MC_CONV_WINOGRAD_2X2), Int32(MC_CONV_WINOGRAD_4X4)]
        for algorithm in tiles { #expect(mc_conv2d_shape_set_algorithm(&shape, algorithm) == (winograd ? 0 : -1)) }
        #expect(mc_conv2d_shape_set_algorithm(&shape, Int32(MC_CONV_DIRECT)) == (stride == 1 ? 0 : -1))
        var made = mc_conv2d_shape()
        _ = mc_conv2d_shape_make(&made, Int32(n), Int32(c), Int32(h), Int32(w), Int32(o), Int32(k), Int32(k), Int32(stride), Int32(pad))
        if stride > 1 { #expect(made.algorithm == Int32(c >= 8 ? MC_CONV_IM2ROW : MC_CONV_IM2COL)) }
        for algorithm in [Int32(MC_CONV_IM2COL), Int32(MC_CONV_IM2ROW)] + (winograd ? tiles : []) + (stride == 1 ? [Int32(MC_CONV_DIRECT)] : []) {
            // F(4x4, 3x3) interpolates at +-2 as well as 0 and +-1, so it rounds more than F(2x2, 3x3).
            let tolerance = algorithm == Int32(MC_CONV_WINOGRAD_4X4) ? 1e-5 : 1e-6
            for chunk in [1, 2, n] {
                for (i, (a, b)) in zip(run(algorithm, chunk: chunk), reference).enumerated() {
                    #expect(relativeError(a.map(Double.init), b.map(Double.init)) < tolerance,
                            "algorithm \(algorithm) chunk \(chunk) output \(i)")
                }
            }
        }
    }

    @Test func maxPoolRoutesToTheFirstMaximum() {
        // One 2x4 plane, two 2x2 windows: a tie in the second goes to the first element in row-major order.
        let x: [Float] = [1, 5, 7, 7,
                          3, 2, 7, 0]
        var y: [Float] = [0, 0], argmax: [Int32] = [0, 0], dx = [Float](repeating: -1, count: 8)
        mc_maxpool_forward(1, 1, 2, 4, 2, x, &y, &argmax)
        #expect(y == [5, 7] && argmax == [1, 2])
        mc_maxpool_backward(1, 1, 2, 4, 2, argmax, [10, 20], &dx)
        #expect(dx == [0, 10, 20, 0, 0, 0, 0, 0])
    }

    /// Backward overwrites all of dx, rows and columns no window covers included, and routes dy to each
    /// window's winner — for 2x2 windows (their own loop) and 3x3, on odd-sized planes.
    @Test(arguments: [2, 3]) func maxPoolBackwardIsTheScatterOfDy(_ k: Int) {
        let (n, c, h, w) = (2, 3, 7, 9), (oh, ow) = (h / k, w / k)
        var random = RandomSource(seed: 12)
        let x = random.normals(n * c * h * w), dy = random.normals(n * c * oh * ow)
        var y = [Float](repeating: 0, count: n * c * oh * ow), argmax = [Int32](repeating: 0, count: y.count)
        mc_maxpool_forward(Int32(n), Int32(c), Int32(h), Int32(w), Int32(k), x, &y, &argmax)
        var expected = [Float](repeating: 0, count: x.count)
        for p in 0 ..< n * c {
            for j in 0 ..< oh * ow { expected[p * h * w + Int(argmax[p * oh * ow + j])] += dy[p * oh * ow + j] }
        }
        var dx = [Float](repeating: .nan, count: x.count)
        mc_maxpool_backward(Int32(n), Int32(c), Int32(h), Int32(w), Int32(k), argmax, dy, &dx)
        #expect(dx == expected)
    }

    /// The fused batch-norm, ReLU and pool forward gives the unfused passes' values to the bit and the pool's
    /// winners (the first maximum) wherever a value passes, -1 elsewhere, and its R-forward the unfused
    /// R-forward to the bit: on integer data full of ties, on wide planes (37 columns: 18 windows a row and a
    /// column none covers), square odd ones and even ones.
    @Test(arguments: [(6, 37), (7, 7), (4, 16)]) func fusedPoolForwardKeepsTheFirstMaximum(_ h: Int, _ w: Int) {
        let (n, c, oh, ow) = (3, 4, h / 2, w / 2), s = h * w
        var random = RandomSource(seed: 21)
        let x = (0 ..< n * c * s).map { _ in Float(Int(random.uniform(0, 4))) }
        let gamma: [Float] = [1, -0.5, 2, 0.75], beta: [Float] = [0.1, 0.2, -0.3, 0]
        var y = [Float](repeating: .nan, count: n * c * oh * ow), argmax = [Int32](repeating: 7, count: y.count)
        var mean = [Float](repeating: 0, count: c), invstd = mean
        mc_bn_relu_pool_forward(Int32(n), Int32(c), Int32(h), Int32(w), 0, Int32(c), 1e-5, x, gamma, beta, &y, &argmax, &mean, &invstd)
        var normalized = [Float](repeating: 0, count: x.count), activated = normalized, mean2 = mean, invstd2 = invstd
        mc_batchnorm_forward(Int32(n), Int32(c), Int32(s), 0, Int32(c), 1e-5, x, gamma, beta, &normalized, &mean2, &invstd2)
        mc_relu_forward(x.count, normalized, &activated)
        var pooled = y, winners = argmax
        mc_maxpool_forward(Int32(n), Int32(c), Int32(h), Int32(w), 2, activated, &pooled, &winners)
        #expect(y == pooled && mean == mean2 && invstd == invstd2)
        #expect(argmax == zip(pooled, winners).map { $0 > 0 ? $1 : -1 })
        #expect(Set(zip(pooled, winners).filter { $0.0 > 0 }.map { $0.1 % 2 }).count == 2, "winners in both columns of a window")

        let rx = random.normals(x.count), vgamma: [Float] = [0.3, -1, 0.5, 2], vbeta: [Float] = [-0.2, 0.4, 0, 1]
        var ry = y, rxMean = mean, xhatRxMean = mean
        mc_bn_relu_pool_rforward(Int32(n), Int32(c), Int32(h), Int32(w), 0, Int32(c), x, mean, invstd, gamma, argmax, rx, vgamma, vbeta,
                                 &ry, &rxMean, &xhatRxMean)
        var rnormalized = normalized, ractivated = normalized, rpooled = y, rxMean2 = mean, xhatRxMean2 = mean
        mc_batchnorm_rforward(Int32(n), Int32(c), Int32(s), 0, Int32(c), x, mean, invstd, gamma, rx, vgamma, vbeta,
                              &rnormalized, &rxMean2, &xhatRxMean2)
        mc_relu_rforward(x.count, activated, rnormalized, &ractivated)
        mc_maxpool_rforward(Int32(n), Int32(c), Int32(h), Int32(w), 2, winners, ractivated, &rpooled)
        #expect(ry == rpooled && rxMean == rxMean2 && xhatRxMean == xhatRxMean2)
    }

    @Test func softmaxCrossEntropyIsStableForLargeLogitsAndCountsCorrect() {
        let z: [Float] = [1000, 0, -1000, 0, 0, 0]
        var probs = [Float](repeating: 0, count: 6), correct: Int32 = 0
        let loss = mc_softmax_xent_forward(2, 3, z, [0, 2], &probs, &correct)
        #expect(abs(loss - (0 + log(3.0)) / 2) < 1e-6)
        #expect(correct == 1)
        #expect(probs[0] == 1 && abs(probs[3] - 1 / 3) < 1e-6)
    }

    /// The batch statistics, merged plane by plane in one pass, match a two-pass double computation on data
    /// far from zero whose planes differ in mean (where a sum-of-squares formula would cancel catastrophically),
    /// for image planes with a partial vector and for features (one value per plane).
    @Test(arguments: [(6, 3, 37), (50, 2, 1)]) func batchNormStatisticsAreExactFarFromZero(_ n: Int, _ c: Int, _ s: Int) {
        var random = RandomSource(seed: 5)
        let noise = random.normals(n * c * s)
        let x: [Float] = (0 ..< n * c * s).map { k in
            let planeOffset = Double(k / s % 7) * 0.05
            return Float(1000 + planeOffset + 0.01 * Double(noise[k]))
        }
        var y = [Float](repeating: 0, count: x.count), mean = [Float](repeating: 0, count: c), invstd = mean
        let gamma = [Float](repeating: 1, count: c), beta = [Float](repeating: 0, count: c)
        mc_batchnorm_forward(Int32(n), Int32(c), Int32(s), 0, Int32(c), 1e-12, x, gamma, beta, &y, &mean, &invstd)
        for ch in 0 ..< c {
            var values: [Double] = []
            for i in 0 ..< n {
                let plane = (i * c + ch) * s
                values += x[plane ..< plane + s].map { Double($0) }
            }
            let mu: Double = values.reduce(0, +) / Double(values.count)
            let variance: Double = values.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(values.count)
            #expect(abs(Double(mean[ch]) - mu) <= 1e-7 * mu)
            #expect(abs(Double(invstd[ch]) * variance.squareRoot() - 1) < 1e-6)
        }
    }

    @Test func batchNormTrainingModeUpdatesRunningStatisticsWithUnbiasedVariance() throws {
        let model = try Model(inputShape: [2], layers: [BatchNorm(2)])
        let workspace = Workspace(model: model)
        workspace.normalization = .training(momentum: 0.25)
        let inputs = try Tensor(shape: [4, 2], scalars: [1, 10, 2, 20, 3, 30, 6, 40])
        _ = try workspace.loss(at: model.initialParameters(seed: 0), on: Batch(inputs: inputs, labels: [0, 1, 0, 1]))
        // Channel 0: mean 3, unbiased variance 14/3; channel 1: mean 25, unbiased variance 500/3.
        let expected: [Float] = [0.75 * 0 + 0.25 * 3, 0.25 * 25, 0.75 + 0.25 * 14 / 3, 0.75 + 0.25 * 500 / 3]
        let state = workspace.state
        #expect(zip([state[0], state[1], state[2], state[3]], expected).allSatisfy { abs($0 - $1) < 1e-4 })
        // Transductive mode leaves them alone.
        workspace.normalization = .transductive
        _ = try workspace.loss(at: model.initialParameters(seed: 0), on: Batch(inputs: inputs, labels: [0, 1, 0, 1]))
        #expect(workspace.state == state)
    }
}

import Foundation
