import CKernels

/// The number of threads OpenBLAS uses inside one GEMM (a process-wide setting of the BLAS library).
public enum BLAS {
    public static var threads: Int {
        get { Int(mc_blas_threads()) }
        set { mc_blas_set_threads(Int32(max(1, newValue))) }
    }
}

/// One timed operation: the median wall time of several repetitions after a warm-up, and its rate.
public struct Timing: Sendable, Codable {
    public let name: String
    /// Median seconds per repetition.
    public let seconds: Double
    public let repetitions: Int
    /// Floating-point operations per repetition (multiply and add counted separately), if meaningful.
    public let flops: Double?
    public var gflops: Double? { flops.map { $0 / seconds / 1e9 } }

    /// Runs `body` once to warm up, then `repetitions` times, and keeps the median.
    public static func measure(_ name: String, repetitions: Int, flops: Double? = nil, _ body: () throws -> Void) rethrows -> Timing {
        try body()
        let clock = ContinuousClock()
        var samples: [Double] = []
        for _ in 0 ..< max(1, repetitions) {
            let start = clock.now
            try body()
            let elapsed = clock.now - start
            samples.append(elapsed.seconds)
        }
        samples.sort()
        return Timing(name: name, seconds: samples[samples.count / 2], repetitions: samples.count, flops: flops)
    }
}

/// Kernel-level throughput figures.
public enum KernelBenchmarks {
    /// Single-precision GEMM C[m,n] = op(A) op(B) through ``mc_gemm`` (OpenBLAS above the tiny sizes).
    public static func gemm(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, label: String? = nil,
                            repetitions: Int = 5) -> Timing {
        var random = RandomSource(seed: 1)
        let a = (0 ..< m * k).map { _ in random.normal() }, b = (0 ..< k * n).map { _ in random.normal() }
        var c = [Float](repeating: 0, count: m * n)
        let shape = "\(m)x\(n)x\(k)" + (transA || transB ? " (\(transA ? "T" : "N")\(transB ? "T" : "N"))" : "")
        return Timing.measure(label.map { "\($0) \(shape)" } ?? "sgemm \(shape)", repetitions: repetitions,
                              flops: 2 * Double(m) * Double(n) * Double(k)) {
            mc_gemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(transA ? m : k),
                    b, Int32(transB ? k : n), 0, &c, Int32(n))
        }
    }

    /// The GEMMs the convolution kernels issue for Conv-4 (64 channels, 28x28x1 inputs) on a batch of
    /// `batch` images, at the kernels' own algorithm and chunk size. im2col (the 1-channel first layer): the
    /// forward product W·col, the weight gradient dy·colᵀ. Winograd (the 64-channel layers): one of the 16
    /// products per chunk of each kind — forward V·Uᵀ, weight gradient dMᵀ·V, data gradient dM·U.
    public static func conv4Gemms(batch: Int = 80, repetitions: Int = 5) -> [Timing] {
        var timings: [Timing] = []
        var (c, side) = (1, 28)
        for layer in 1 ... 4 {
            var s = mc_conv2d_shape()
            _ = mc_conv2d_shape_make(&s, Int32(batch), Int32(c), Int32(side), Int32(side), 64, 3, 3, 1, 1)
            if s.algorithm == Int32(MC_CONV_WINOGRAD) {
                let tiles = Int(s.chunk) * Int((s.oh + 1) / 2 * ((s.ow + 1) / 2)), name = "conv\(layer) Winograd"
                timings.append(gemm(m: tiles, n: 64, k: c, transB: true, label: "\(name) forward", repetitions: repetitions))
                timings.append(gemm(m: 64, n: c, k: tiles, transA: true, label: "\(name) weight grad", repetitions: repetitions))
                timings.append(gemm(m: tiles, n: c, k: 64, label: "\(name) data grad", repetitions: repetitions))
            } else {
                let cols = Int(s.chunk) * Int(s.oh * s.ow), ckk = c * 9
                timings.append(gemm(m: 64, n: cols, k: ckk, label: "conv\(layer) im2col forward", repetitions: repetitions))
                timings.append(gemm(m: 64, n: ckk, k: cols, transB: true, label: "conv\(layer) im2col weight grad", repetitions: repetitions))
            }
            (c, side) = (64, side / 2)
        }
        return timings
    }

    /// The convolution kernels whole (transforms or im2col, GEMMs, layout changes) for a 64→64 3x3 layer of
    /// Conv-4 on `side`x`side` images (14: the second block), batch `batch`, by each algorithm: forward,
    /// backward (data and weight gradients), R-forward and R-backward. FLOPs are the direct convolution's
    /// products (1, 2, 2 and 4 times the forward's) for both, so Winograd's rate is an effective one.
    public static func convolution(side: Int = 14, batch: Int = 80, repetitions: Int = 5) -> [Timing] {
        var random = RandomSource(seed: 3)
        func tensor(_ count: Int) -> [Float] { (0 ..< count).map { _ in random.normal() } }
        let input = batch * 64 * side * side, output = batch * 64 * side * side, weights = 64 * 64 * 9
        let x = tensor(input), rx = tensor(input), w = tensor(weights), vw = tensor(weights), bias = tensor(64)
        let dy = tensor(output), rdy = tensor(output)
        var y = [Float](repeating: 0, count: output), dx = [Float](repeating: 0, count: input)
        var dw = [Float](repeating: 0, count: weights), db = [Float](repeating: 0, count: 64)
        let forward = 2 * Double(output) * Double(64 * 9)
        var timings: [Timing] = []
        for (algorithm, label) in [(MC_CONV_IM2COL, "im2col"), (MC_CONV_WINOGRAD, "Winograd")] {
            var s = mc_conv2d_shape()
            _ = mc_conv2d_shape_make(&s, Int32(batch), 64, Int32(side), Int32(side), 64, 3, 3, 1, 1)
            _ = mc_conv2d_shape_set_algorithm(&s, Int32(algorithm))
            var scratch = [Float](repeating: 0, count: mc_conv2d_workspace_size(&s))
            let name = "conv 64->64 3x3 \(side)x\(side) batch \(batch) \(label)"
            timings += [
                Timing.measure("\(name) forward", repetitions: repetitions, flops: forward) {
                    mc_conv2d_forward(&s, x, w, bias, &y, &scratch)
                },
                Timing.measure("\(name) backward", repetitions: repetitions, flops: 2 * forward) {
                    mc_conv2d_backward(&s, x, w, dy, &dx, &dw, &db, &scratch)
                },
                Timing.measure("\(name) R-forward", repetitions: repetitions, flops: 2 * forward) {
                    mc_conv2d_rforward(&s, x, rx, w, vw, bias, &y, &scratch)
                },
                Timing.measure("\(name) R-backward", repetitions: repetitions, flops: 4 * forward) {
                    mc_conv2d_rbackward(&s, x, rx, w, vw, dy, rdy, &dx, &dw, &db, &scratch)
                },
            ]
        }
        return timings
    }

    /// One forward and backward pass (loss and full parameter gradient) of Conv-4 with transductive
    /// batch-norm on a batch of random 28x28x1 images. FLOPs count the convolutions and the head: forward
    /// once, backward twice (data and weights) except the first layer's data gradient, which is not needed.
    public static func conv4ForwardBackward(batch: Int = 80, classes: Int = 5, channels: Int = 64,
                                            repetitions: Int = 5) throws -> Timing {
        let model = try Model.conv4(classes: classes, channels: channels)
        var random = RandomSource(seed: 2)
        let inputs = try Tensor(shape: [batch] + model.inputShape, scalars: (0 ..< batch * 784).map { _ in random.normal() })
        let data = try Batch(inputs: inputs, labels: (0 ..< batch).map { Int32($0 % classes) })
        let workspace = Workspace(model: model)
        let theta = model.initialParameters(seed: 0)
        var gradient = [Float](repeating: 0, count: model.parameterCount)
        var flops = 0.0
        for (l, layer) in model.layers.enumerated() {
            let out = model.shapes[l + 1].reduce(1, *)
            if let conv = layer as? Conv2d {
                let forward = 2 * Double(batch * out * conv.inChannels * conv.kernel * conv.kernel)
                flops += forward * (l == 0 ? 2 : 3)
            } else if let linear = layer as? Linear {
                flops += 2 * Double(batch * linear.inputs * linear.outputs) * 3
            }
        }
        return try Timing.measure("Conv-4 (\(channels) channels, BN) forward+backward, batch \(batch)",
                                  repetitions: repetitions, flops: flops) {
            try workspace.gradient(at: theta, on: data, into: &gradient)
        }
    }
}
