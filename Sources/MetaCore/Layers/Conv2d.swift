import CKernels

/// 2-D convolution (cross-correlation) on NCHW images, weights `[outChannels, inChannels, k, k]` and a bias.
///
/// Initialised as PyTorch's `nn.Conv2d` (uniform in ±1/√(inChannels·k²)) unless told otherwise.
public struct Conv2d: Layer {
    public var backwardReads: BackwardReads { .input }
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    public let initialization: Initialization

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int = 3, stride: Int = 1, padding: Int = 0,
                initialization: Initialization = .pytorch) throws {
        guard inChannels > 0, outChannels > 0, kernel > 0, stride > 0, padding >= 0 else {
            throw MetaCoreError.argument("Conv2d needs positive channels, kernel and stride and padding >= 0; got in \(inChannels), out \(outChannels), kernel \(kernel), stride \(stride), padding \(padding)")
        }
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
        self.initialization = initialization
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input.count == 3, input[0] == inChannels else {
            throw MetaCoreError.shape("Conv2d expects images of \(inChannels)xHxW, got \(describe(input))")
        }
        let h = (input[1] + 2 * padding - kernel), w = (input[2] + 2 * padding - kernel)
        guard h >= 0, w >= 0 else {
            throw MetaCoreError.shape("Conv2d kernel \(kernel) with padding \(padding) does not fit a \(input[1])x\(input[2]) image")
        }
        return [outChannels, h / stride + 1, w / stride + 1]
    }

    public var parameterShapes: [(name: String, shape: [Int])] {
        [("weight", [outChannels, inChannels, kernel, kernel]), ("bias", [outChannels])]
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {
        initialization.fill(parameters, weights: biasOffset, fanIn: inChannels * kernel * kernel, fanOut: outChannels * kernel * kernel,
                            using: &random)
    }

    /// Where the bias starts in the layer's parameters: after the weights.
    var biasOffset: Int { outChannels * inChannels * kernel * kernel }

    /// The kernels' description of a pass over `batch` images of shape `input`, with the algorithm they pick.
    func shape(batch: Int, input: [Int]) -> mc_conv2d_shape {
        var s = mc_conv2d_shape()
        _ = mc_conv2d_shape_make(&s, Int32(batch), Int32(inChannels), Int32(input[1]), Int32(input[2]),
                                 Int32(outChannels), Int32(kernel), Int32(kernel), Int32(stride), Int32(padding))
        return s
    }

    /// Scratch for one part of a split pass: the convolution's own workspace for the part's images.
    private func partScratch(_ split: BatchSplit, input: [Int]) -> Int {
        var s = shape(batch: split.size, input: input)
        return mc_conv2d_workspace_size(&s)
    }

    public func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory {
        let output = (try? outputShape(for: input))?.reduce(1, *) ?? 0
        let split = BatchSplit(batch: batch, outputCount: output, threads: threads)
        return LayerMemory(scratch: split.scratch(perPart: partScratch(split, input: input), summing: parameterCount))
    }

    private var parameterCount: Int { biasOffset + outChannels }

    /// Runs `body` with the shape of every part of the pass's batch and the part's pass (own scratch; with
    /// `output`, the gradient or H·v slice the parts' parameter derivatives are summed into).
    private func parts(_ p: LayerPass, summing output: UnsafeMutablePointer<Float>? = nil,
                       _ body: (inout mc_conv2d_shape, LayerPass) -> Void) {
        p.forEachPart(scratch: partScratch(p.split, input: p.inputShape), summing: output == nil ? 0 : parameterCount,
                      into: output) { q in
            var s = shape(batch: q.batch, input: q.inputShape)
            body(&s, q)
        }
    }

    public func forward(_ p: LayerPass) {
        parts(p) { s, q in mc_conv2d_forward(&s, q.x, q.theta, q.theta + biasOffset, q.y, q.scratch) }
    }

    public func backward(_ p: LayerPass) {
        parts(p, summing: p.gradient) { s, q in
            mc_conv2d_backward(&s, q.x, q.theta, q.dy, q.dx, q.gradient, q.gradient + biasOffset, q.scratch)
        }
    }

    public func rForward(_ p: LayerPass) {
        parts(p) { s, q in mc_conv2d_rforward(&s, q.x, q.Rx, q.theta, q.v, q.v + biasOffset, q.Ry, q.scratch) }
    }

    public func rBackward(_ p: LayerPass) {
        parts(p, summing: p.hv) { s, q in
            mc_conv2d_rbackward(&s, q.x, q.Rx, q.theta, q.v, q.dy, q.Rdy, q.Rdx, q.hv, q.hv + biasOffset, q.scratch)
        }
    }
}
