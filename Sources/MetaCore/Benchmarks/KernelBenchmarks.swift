import CKernels
import Dispatch

/// The BLAS library's process-wide settings: its threads and its CPU kernels.
public enum BLAS {
    /// The number of threads OpenBLAS uses inside one GEMM.
    public static var threads: Int {
        get { Int(mc_blas_threads()) }
        set { mc_blas_set_threads(Int32(max(1, newValue))) }
    }

    /// The CPU kernels OpenBLAS chose when it loaded ("Haswell", "Zen", "SkylakeX", ...).
    public static var core: String { String(cString: mc_blas_core()) }

    /// The kernels to ask OpenBLAS for, through the `OPENBLAS_CORETYPE` environment variable, when it fell back
    /// to its SSE3 ones ("Prescott") on a CPU with AVX2 or AVX-512; `nil` when its choice stands.
    ///
    /// OpenBLAS falls back so on a CPU newer than it knows: 0.3.21, Debian 12's, takes Intel's family 6 model 207
    /// for a Prescott, and its SGEMM then runs several times slower. It reads the variable once, as it loads:
    /// `metactl` sets it and starts again; a program that links MetaCore sets it in the environment it starts in.
    public static var suggestedCore: String? { suggestedCore(chosen: core, vectorLevel: Int(mc_cpu_vector_level())) }

    /// The decision of ``suggestedCore``: `chosen` is OpenBLAS's choice, `vectorLevel` the CPU's widest vectors
    /// (2: AVX-512, 1: AVX2 with FMA, 0: less).
    public static func suggestedCore(chosen: String, vectorLevel: Int) -> String? {
        guard chosen == "Prescott" else { return nil }
        switch vectorLevel {
        case 2...: return "SkylakeX"
        case 1: return "Haswell"
        default: return nil
        }
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

    /// As ``measure(_:repetitions:flops:_:)``, with `body(thread)` run on `threads` threads at once (each
    /// on its own buffers, BLAS single-threaded: how the tasks of a meta-batch run), `calls` times in a row
    /// per thread and repetition (so that dispatching the threads does not weigh on calls of microseconds).
    /// `flops` and ``seconds`` are one call's; the rate is the threads' combined throughput.
    public static func measure(_ name: String, threads: Int, calls: Int = 1, repetitions: Int, flops: Double? = nil,
                               _ body: @escaping @Sendable (Int) -> Void) -> Timing {
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        let run: @Sendable (Int) -> Void = { t in for _ in 0 ..< calls { body(t) } }
        let timing = measure(name, repetitions: repetitions, flops: flops.map { $0 * Double(threads * calls) }) {
            if threads == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: threads, execute: run) }
        }
        return Timing(name: name, seconds: timing.seconds / Double(calls), repetitions: timing.repetitions,
                      flops: flops.map { $0 * Double(threads) })
    }
}

/// Buffers a kernel benchmark writes, one set per thread (the threads share the read-only inputs).
private final class PerThread<Value>: @unchecked Sendable {
    private let values: UnsafeMutablePointer<Value>
    private let count: Int
    init(_ threads: Int, _ make: () -> Value) {
        count = threads
        values = .allocate(capacity: threads)
        values.initialize(from: (0 ..< threads).map { _ in make() }, count: threads)
    }
    deinit { values.deinitialize(count: count); values.deallocate() }
    /// Thread `index`'s value; each thread touches only its own.
    func with<R>(_ index: Int, _ body: (inout Value) throws -> R) rethrows -> R { try body(&values[index]) }
}

/// Kernel-level throughput figures.
public enum KernelBenchmarks {
    /// Single-precision GEMM C[m,n] = op(A) op(B) through `mc_gemm` (OpenBLAS above the tiny sizes): one
    /// call on BLAS's own threads, or with `threads`, one single-threaded call per thread at once (repeated
    /// to about 0.2 GFLOP per thread and repetition).
    public static func gemm(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, label: String? = nil,
                            threads: Int? = nil, repetitions: Int = 5) -> Timing {
        var random = RandomSource(seed: 1)
        let a = (0 ..< m * k).map { _ in random.normal() }, b = (0 ..< k * n).map { _ in random.normal() }
        let c = PerThread(threads ?? 1) { [Float](repeating: 0, count: m * n) }
        let shape = "\(m)x\(n)x\(k)" + (transA || transB ? " (\(transA ? "T" : "N")\(transB ? "T" : "N"))" : "")
        let name = label.map { "\($0) \(shape)" } ?? "sgemm \(shape)", flops = 2 * Double(m) * Double(n) * Double(k)
        let call: @Sendable (Int) -> Void = { t in
            c.with(t) { mc_gemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(transA ? m : k),
                                b, Int32(transB ? k : n), 0, &$0, Int32(n)) }
        }
        guard let threads else { return Timing.measure(name, repetitions: repetitions, flops: flops) { call(0) } }
        return Timing.measure(name, threads: threads, calls: max(1, Int(2e8 / flops)), repetitions: repetitions, flops: flops, call)
    }

    /// The GEMMs a ``Linear`` layer's passes issue for an MLP (`sizes`, default the sinusoid's 1-40-40-1) on
    /// `points` samples, layer by layer: the forward product x·Wᵀ (B transposed, so the kernel packs W first),
    /// the data gradient dy·W (not on the first layer, whose input is the model's) and the weight gradient
    /// dyᵀ·x. The R-passes issue the same shapes.
    public static func mlpGemms(sizes: [Int] = [1, 40, 40, 1], points: Int = 10, threads: Int = 1, repetitions: Int = 5) -> [Timing] {
        var timings: [Timing] = []
        for (layer, (inputs, outputs)) in zip(sizes, sizes.dropFirst()).enumerated() {
            let name = "mlp layer \(layer + 1)"
            timings.append(gemm(m: points, n: outputs, k: inputs, transB: true, label: "\(name) forward", threads: threads, repetitions: repetitions))
            if layer > 0 { timings.append(gemm(m: points, n: inputs, k: outputs, label: "\(name) data grad", threads: threads, repetitions: repetitions)) }
            timings.append(gemm(m: outputs, n: inputs, k: points, transA: true, label: "\(name) weight grad", threads: threads, repetitions: repetitions))
        }
        return timings
    }

    /// The GEMMs the convolution kernels issue for Conv-4 (64 channels, 28x28x1 inputs) on a batch of
    /// `batch` images, at the kernels' own algorithm and chunk size. Winograd (the 64-channel layers): one of
    /// the 16 (2x2 tiles) or 36 (4x4 tiles) products per chunk of each kind — forward V·Uᵀ, weight gradient
    /// dMᵀ·V, data gradient dM·U. im2col, for a layer that ran it: the forward product W·col, the weight
    /// gradient dy·colᵀ. The 1-channel first layer runs the direct kernel, which issues no GEMM.
    public static func conv4Gemms(batch: Int = 80, threads: Int = 1, repetitions: Int = 5) -> [Timing] {
        var timings: [Timing] = []
        var (c, side) = (1, 28)
        for layer in 1 ... 4 {
            var s = mc_conv2d_shape()
            _ = mc_conv2d_shape_make(&s, Int32(batch), Int32(c), Int32(side), Int32(side), 64, 3, 3, 1, 1)
            if s.algorithm == Int32(MC_CONV_DIRECT) {
                // No GEMM: the direct kernel's figures are in `convolution`.
            } else if s.algorithm != Int32(MC_CONV_IM2COL) {
                let tiles = Int(s.chunk) * mc_winograd_tiles(&s), name = "conv\(layer) \(winogradLabel(s))"
                timings.append(gemm(m: tiles, n: 64, k: c, transB: true, label: "\(name) forward", threads: threads, repetitions: repetitions))
                timings.append(gemm(m: 64, n: c, k: tiles, transA: true, label: "\(name) weight grad", threads: threads, repetitions: repetitions))
                timings.append(gemm(m: tiles, n: c, k: 64, label: "\(name) data grad", threads: threads, repetitions: repetitions))
            } else {
                let cols = Int(s.chunk) * Int(s.oh * s.ow), ckk = c * 9
                timings.append(gemm(m: 64, n: cols, k: ckk, label: "conv\(layer) im2col forward", threads: threads, repetitions: repetitions))
                timings.append(gemm(m: 64, n: ckk, k: cols, transB: true, label: "conv\(layer) im2col weight grad", threads: threads, repetitions: repetitions))
            }
            (c, side) = (64, side / 2)
        }
        return timings
    }

    /// "Winograd 2x2" or "Winograd 4x4": the output tile size of a Winograd shape.
    private static func winogradLabel(_ s: mc_conv2d_shape) -> String {
        s.algorithm == Int32(MC_CONV_WINOGRAD_4X4) ? "Winograd 4x4" : "Winograd 2x2"
    }

    /// The convolution kernels whole (transforms, im2col or padding, GEMMs or direct sums, layout changes) for
    /// a `channels`→64 3x3 layer of Conv-4 on `side`x`side` images (1 and 28: the first block; 64 and 14, 7,
    /// 3: the others), batch `batch`, by each algorithm that suits the layer: forward, backward (data and
    /// weight gradients), R-forward and R-backward. FLOPs are the direct convolution's products (1, 2, 2 and 4
    /// times the forward's) for all, so Winograd's rate is an effective one.
    public static func convolution(channels: Int = 64, side: Int = 14, batch: Int = 80, threads: Int = 1,
                                   repetitions: Int = 5) -> [Timing] {
        var random = RandomSource(seed: 3)
        func tensor(_ count: Int) -> [Float] { (0 ..< count).map { _ in random.normal() } }
        let input = batch * channels * side * side, output = batch * 64 * side * side, weights = 64 * channels * 9
        let x = tensor(input), rx = tensor(input), w = tensor(weights), vw = tensor(weights), bias = tensor(64)
        let dy = tensor(output), rdy = tensor(output)
        struct Outputs { var y, dx, dw, db, scratch: [Float] }
        let forward = 2 * Double(output) * Double(channels * 9)
        var timings: [Timing] = []
        let algorithms = channels < 4 ? [(MC_CONV_IM2COL, "im2col"), (MC_CONV_DIRECT, "direct")]
            : [(MC_CONV_IM2COL, "im2col"), (MC_CONV_WINOGRAD_2X2, "Winograd 2x2"), (MC_CONV_WINOGRAD_4X4, "Winograd 4x4")]
        for (algorithm, label) in algorithms {
            var shape = mc_conv2d_shape()
            _ = mc_conv2d_shape_make(&shape, Int32(batch), Int32(channels), Int32(side), Int32(side), 64, 3, 3, 1, 1)
            _ = mc_conv2d_shape_set_algorithm(&shape, Int32(algorithm))
            let s = shape, scratch = mc_conv2d_workspace_size(&shape)
            let buffers = PerThread(threads) {
                Outputs(y: [Float](repeating: 0, count: output), dx: [Float](repeating: 0, count: input),
                        dw: [Float](repeating: 0, count: weights), db: [Float](repeating: 0, count: 64),
                        scratch: [Float](repeating: 0, count: scratch))
            }
            let name = "conv \(channels)->64 3x3 \(side)x\(side) batch \(batch) \(label)"
            timings += [
                Timing.measure("\(name) forward", threads: threads, repetitions: repetitions, flops: forward) { t in
                    buffers.with(t) { o in var s = s; mc_conv2d_forward(&s, x, w, bias, &o.y, &o.scratch) }
                },
                Timing.measure("\(name) backward", threads: threads, repetitions: repetitions, flops: 2 * forward) { t in
                    buffers.with(t) { o in var s = s; mc_conv2d_backward(&s, x, w, dy, &o.dx, &o.dw, &o.db, &o.scratch) }
                },
                Timing.measure("\(name) R-forward", threads: threads, repetitions: repetitions, flops: 2 * forward) { t in
                    buffers.with(t) { o in var s = s; mc_conv2d_rforward(&s, x, rx, w, vw, bias, &o.y, &o.scratch) }
                },
                Timing.measure("\(name) R-backward", threads: threads, repetitions: repetitions, flops: 4 * forward) { t in
                    buffers.with(t) { o in var s = s; mc_conv2d_rbackward(&s, x, rx, w, vw, dy, rdy, &o.dx, &o.dw, &o.db, &o.scratch) }
                },
            ]
        }
        return timings
    }

    /// One forward and backward pass (loss and full parameter gradient) of Conv-4 with transductive
    /// batch-norm on a batch of random 28x28x1 images, on each of `threads` threads at once (a workspace
    /// each, as the tasks of a meta-batch run). FLOPs count the convolutions and the head: forward once,
    /// backward twice (data and weights) except the first layer's data gradient, which is not needed.
    public static func conv4ForwardBackward(batch: Int = 80, classes: Int = 5, channels: Int = 64, threads: Int = 1,
                                            repetitions: Int = 5) throws -> Timing {
        let model = try Model.conv4(classes: classes, channels: channels)
        var random = RandomSource(seed: 2)
        let inputs = try Tensor(shape: [batch] + model.inputShape, scalars: (0 ..< batch * 784).map { _ in random.normal() })
        let data = try Batch(inputs: inputs, labels: (0 ..< batch).map { Int32($0 % classes) })
        let theta = model.initialParameters(seed: 0)
        let workspaces = PerThread(threads) { (Workspace(model: model), [Float](repeating: 0, count: model.parameterCount)) }
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
        // One checked pass first: the timed ones repeat it exactly, so they cannot fail where it did not.
        try workspaces.with(0) { w in _ = try w.0.gradient(at: theta, on: data, into: &w.1) }
        return Timing.measure("Conv-4 (\(channels) channels, BN) forward+backward, batch \(batch)", threads: threads,
                              repetitions: repetitions, flops: flops) { t in
            workspaces.with(t) { w in _ = try? w.0.gradient(at: theta, on: data, into: &w.1) }
        }
    }

    /// What fusing the LSTM cell saves: a gradient pass of ``Model/lstm(input:hidden:steps:outputs:fusedCell:)``
    /// with its fused ``LSTMCell``, with the cell written as nodes (slices, activations, elementwise products, a
    /// sum), and with the cell's arithmetic taken out — each step's tied gate product reading the previous step's
    /// first `hidden` gate values: the GEMM work both still do.
    /// MSE on the last hidden state; FLOPs count the gate products (forward once, backward twice).
    public static func lstmComposition(batch: Int = 32, input: Int = 64, hidden: Int = 128, steps: Int = 20,
                                       repetitions: Int = 5) throws -> [Timing] {
        let gates = Graph()
        let x = gates.input([steps, input])
        var state = gates.apply(try Constant(shape: [hidden]), to: [])
        var first: Graph.Value?
        for t in 0 ..< steps {
            let xt = gates.apply(try Reshape([input]), to: gates.apply(try Slice(t ..< t + 1), to: x))
            let z = gates.apply(try Linear(input + hidden, 4 * hidden), to: gates.concatenate([xt, state]), tiedTo: first)
            first = first ?? z
            state = gates.apply(try Slice(0 ..< hidden), to: z)
        }
        let models = [("LSTM \(input)-\(hidden), \(steps) steps, fused cell: gradient, batch \(batch)", try Model.lstm(input: input, hidden: hidden, steps: steps)),
                      ("  its cell written as nodes", try Model.lstm(input: input, hidden: hidden, steps: steps, fusedCell: false)),
                      ("  the same gate products without the cell's arithmetic", try Model(gates, output: state))]
        var random = RandomSource(seed: 3)
        let inputs = try Tensor(shape: [batch, steps, input], scalars: (0 ..< batch * steps * input).map { _ in random.normal() })
        let targets = try Tensor(shape: [batch, hidden], scalars: (0 ..< batch * hidden).map { _ in random.normal() })
        let data = try Batch(inputs: inputs, values: targets)
        let flops = 3 * 2 * Double(batch * (input + hidden) * 4 * hidden * steps)
        return try models.map { name, model in
            let workspace = Workspace(model: model), theta = model.initialParameters(seed: 0)
            var gradient: [Float] = []
            try workspace.gradient(at: theta, on: data, into: &gradient)
            return try Timing.measure(name, repetitions: repetitions, flops: flops) { try workspace.gradient(at: theta, on: data, into: &gradient) }
        }
    }
}
