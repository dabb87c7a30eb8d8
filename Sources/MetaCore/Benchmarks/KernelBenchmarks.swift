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
    /// Single-precision GEMM C[m,n] = A[m,k] B[k,n] through OpenBLAS.
    public static func gemm(m: Int, n: Int, k: Int, repetitions: Int = 5) -> Timing {
        var random = RandomSource(seed: 1)
        let a = (0 ..< m * k).map { _ in random.normal() }, b = (0 ..< k * n).map { _ in random.normal() }
        var c = [Float](repeating: 0, count: m * n)
        return Timing.measure("sgemm \(m)x\(n)x\(k)", repetitions: repetitions, flops: 2 * Double(m) * Double(n) * Double(k)) {
            mc_gemm(0, 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        }
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
