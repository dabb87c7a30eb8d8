import CKernels

/// A run of a model's nodes that a ``Workspace`` executes as one step: batch-norm, then ReLU and 2x2
/// max-pooling in either order (Conv-4's block after each convolution pools first), through kernels that
/// never write the full-size intermediate values or their gradients; and where the batch-norm reads a
/// convolution of the model's input that nothing else reads, that convolution too, recomputed by the passes
/// that need its output instead of stored (``ConvolutionBatchNormReLUPool``).
///
/// Fusion is execution only: the model, its nodes, parameter names and checkpoints are the same, and so are
/// the results — the forward and R-forward passes to the bit, the backward passes up to the order in which
/// their sums add up. ``Workspace/fusesLayers`` switches it off.
struct LayerFusion: Sendable {
    /// The nodes it runs: the convolution if any, the batch-norm, then the ReLU and the max-pool.
    let nodes: ClosedRange<Int>
    /// The max-pool's node, whose saved winners the fused step keeps.
    let pool: Int
    let step: BatchNormReLUPool
    /// The convolution of the model's input the run starts with, or nil when it starts at the batch-norm.
    let convolution: Conv2d?

    /// The batch-norm's node.
    var norm: Int { convolution == nil ? nodes.lowerBound : nodes.lowerBound + 1 }

    /// The fused step of a run that starts with a convolution.
    var inputStep: ConvolutionBatchNormReLUPool? {
        convolution.map { ConvolutionBatchNormReLUPool(convolution: $0, block: step) }
    }

    /// The run without its convolution, for passes that need the gradient of the model's input: the fused
    /// input layer computes none.
    var withoutConvolution: LayerFusion {
        LayerFusion(nodes: norm ... nodes.upperBound, pool: pool, step: step, convolution: nil)
    }

    /// The fusable runs of `model`: a BatchNorm of images, then a ReLU and a MaxPool(2) in either order, each
    /// reading only the node before; neither intermediate value read by any other node or output by the
    /// model, and no node tied to another's parameters. (ReLU and max-pooling commute exactly: the same
    /// values, the same winners wherever ReLU lets anything through.) A run also takes the Conv2d before it
    /// if that convolution reads a model input, runs the direct algorithm and feeds the batch-norm alone.
    static func find(in model: Model) -> [LayerFusion] {
        var readers = [Int](repeating: 0, count: model.shapes.count)
        for node in model.nodes { for v in node.inputs { readers[v] += 1 } }
        var found: [LayerFusion] = [], a = 0
        while a + 2 < model.nodes.count {
            defer { a += 1 }
            let nodes = model.nodes
            let pool = nodes[a + 1].layer is MaxPool ? a + 1 : a + 2, relu = pool == a + 1 ? a + 2 : a + 1
            guard let norm = nodes[a].layer as? BatchNorm, nodes[relu].layer is ReLU, (nodes[pool].layer as? MaxPool)?.size == 2,
                  model.shapes[nodes[a].inputs[0]].count == 3 else { continue }
            let normalized = model.value(ofNode: a), rectified = model.value(ofNode: a + 1)
            guard nodes[a + 1].inputs == [normalized], nodes[a + 2].inputs == [rectified],
                  readers[normalized] == 1, readers[rectified] == 1, model.output != normalized, model.output != rectified,
                  (a ... a + 2).allSatisfy({ nodes[$0].owner == $0 }) else { continue }
            let convolution = a > 0 ? inputConvolution(a - 1, of: model, readers: readers) : nil
            found.append(LayerFusion(nodes: (convolution == nil ? a : a - 1) ... a + 2, pool: pool,
                                     step: BatchNormReLUPool(norm: norm), convolution: convolution))
            a += 2
        }
        return found
    }

    /// Node `l` as the convolution of a fused input layer: a Conv2d of a model input by the direct algorithm,
    /// its output read by the next node alone, not the model's output, its parameters its own.
    private static func inputConvolution(_ l: Int, of model: Model, readers: [Int]) -> Conv2d? {
        let node = model.nodes[l], output = model.value(ofNode: l)
        guard let convolution = node.layer as? Conv2d, let input = node.inputs.first, input < model.inputShapes.count,
              model.nodes[l + 1].inputs == [output], readers[output] == 1, model.output != output, node.owner == l,
              ConvolutionBatchNormReLUPool.fuses(convolution, input: model.shapes[input]) else { return nil }
        return convolution
    }

    /// The values that exist only inside the run (the convolution's output, batch-norm's and the next node's): a workspace
    /// running it fused gives them no memory.
    func interiorValues(of model: Model) -> [Int] { (nodes.lowerBound ..< nodes.upperBound).map(model.value(ofNode:)) }

    /// The fused step's buffers: the batch-norm's pass for its input side, parameters and statistics, the
    /// max-pool's for the winners, the last node's for the output side.
    static func pass(norm: LayerPass, pool: LayerPass, last: LayerPass) -> LayerPass {
        LayerPass(batch: norm.batch, inputShape: norm.inputShape, outputShape: last.outputShape,
                  normalization: norm.normalization, threads: norm.threads,
                  x: norm.x, y: last.y, theta: norm.theta, state: norm.state,
                  saved: norm.saved, savedInts: pool.savedInts, rSaved: norm.rSaved, scratch: norm.scratch,
                  dy: last.dy, dx: norm.dx, gradient: norm.gradient,
                  v: norm.v, Rx: norm.Rx, Ry: last.Ry, Rdy: last.Rdy, Rdx: norm.Rdx, hv: norm.hv)
    }
}

/// The passes of batch-norm (batch statistics, or batch statistics that also update the running ones),
/// ReLU and 2x2 max-pooling in a row, over a ``LayerPass`` whose input side is the batch-norm's and whose
/// output side is the run's last node's (``LayerFusion/pass(norm:pool:last:)``). Not for `.inference` mode, which a workspace
/// runs unfused.
struct BatchNormReLUPool: Sendable {
    let norm: BatchNorm

    /// Runs `body(n, c, h, w, c0, c1)` over the channels, split across the pass's threads as batch-norm's are.
    private func channelParts(_ p: LayerPass, _ body: (Int32, Int32, Int32, Int32, Int32, Int32) -> Void) {
        let c = norm.channels, h = p.inputShape[1], w = p.inputShape[2]
        BatchSplit(batch: c, outputCount: p.batch * h * w, threads: p.threads).forEach { range in
            body(Int32(p.batch), Int32(c), Int32(h), Int32(w), Int32(range.lowerBound), Int32(range.upperBound))
        }
    }

    func forward(_ p: LayerPass) {
        let c = norm.channels, a = norm.affine(p)
        channelParts(p) { n, ch, h, w, c0, c1 in
            mc_bn_relu_pool_forward(n, ch, h, w, c0, c1, norm.epsilon, p.x, a.gamma, a.beta, p.y, p.savedInts,
                                    p.saved, p.saved + c)
            if case .training(let momentum) = p.normalization {
                mc_batchnorm_update_running(n, ch, h * w, c0, c1, momentum, p.x, p.state, p.state + c)
            }
        }
    }

    func backward(_ p: LayerPass) {
        let c = norm.channels, a = norm.affine(p)
        channelParts(p) { n, ch, h, w, c0, c1 in
            mc_bn_relu_pool_backward(n, ch, h, w, c0, c1, p.x, p.saved, p.saved + c, a.gamma, p.savedInts, p.dy,
                                     p.dx, a.gradientGamma, a.gradientBeta)
        }
    }

    func rForward(_ p: LayerPass) {
        let c = norm.channels, a = norm.affine(p)
        channelParts(p) { n, ch, h, w, c0, c1 in
            mc_bn_relu_pool_rforward(n, ch, h, w, c0, c1, p.x, p.saved, p.saved + c, a.gamma, p.savedInts, p.Rx,
                                     a.vGamma, a.vBeta, p.Ry, p.rSaved, p.rSaved + c)
        }
    }

    func rBackward(_ p: LayerPass) {
        let c = norm.channels, a = norm.affine(p)
        channelParts(p) { n, ch, h, w, c0, c1 in
            mc_bn_relu_pool_rbackward(n, ch, h, w, c0, c1, p.x, p.saved, p.saved + c, a.gamma, a.vGamma, p.savedInts, p.Rx,
                                      p.rSaved, p.rSaved + c, p.dy, p.Rdy, p.Rdx, a.hvGamma, a.hvBeta)
        }
    }
}

/// A model's input convolution by the direct algorithm (an image's few channels at stride 1), then batch-norm,
/// ReLU and 2x2 max-pooling, as one step whose forward and backward passes recompute the convolution's output
/// where they read it, a few planes at a time in cache, instead of storing it (`CKernels/conv_bn_relu_pool.c`):
/// nine multiply-adds per value on one input channel cost less than the value's trips through memory.
///
/// On one thread its forward and backward passes equal the convolution's followed by ``BatchNormReLUPool``'s
/// to the bit. On several, the step splits the channels where the unfused convolution splits the samples, so
/// the weight gradient's sums add up in another order. The R-passes are the unfused ones, on the convolution's
/// output and its R-derivative written to the convolution node's R-memory.
struct ConvolutionBatchNormReLUPool: Sendable {
    let convolution: Conv2d
    let block: BatchNormReLUPool
    private var norm: BatchNorm { block.norm }

    /// Whether the step can run `convolution` on inputs of shape `input`: the convolution's kernels would pick
    /// the direct algorithm, whose values the step recomputes, and its filters have at most 512 taps.
    static func fuses(_ convolution: Conv2d, input: [Int]) -> Bool {
        var shape = convolution.shape(batch: 1, input: input)
        return mc_conv_bn_relu_pool_applies(&shape) != 0
    }

    /// The convolution node's memory when it runs in the step: scratch for batch-norm's (``BatchNorm/affine(_:)``)
    /// and for every part of a split pass, and R-memory for the convolution's output, its R-derivative and the
    /// R-derivative of its gradient.
    func memory(_ own: LayerMemory, batch: Int, input: [Int], threads: Int) -> LayerMemory {
        let output = (try? convolution.outputShape(for: input)) ?? [norm.channels, 0, 0]
        var shape = convolution.shape(batch: batch, input: input), memory = own
        let parts = channels(batch: batch, planeSize: output[1] * output[2], threads: threads).parts
        memory.scratch = max(own.scratch, affineScratch(output, batch: batch, threads: threads) + parts * mc_conv_bn_relu_pool_workspace_size(&shape))
        memory.rSaved = own.rSaved + 3 * batch * output.reduce(1, *)
        return memory
    }

    private func affineScratch(_ shape: [Int], batch: Int, threads: Int) -> Int {
        norm.memory(batch: batch, input: shape, threads: threads).scratch
    }

    /// The split of the channels across threads, as batch-norm's.
    private func channels(batch: Int, planeSize: Int, threads: Int) -> BatchSplit {
        BatchSplit(batch: norm.channels, outputCount: batch * planeSize, threads: threads)
    }

    /// Runs `body(shape, c0, c1, workspace)` over the channels, split across the block pass's threads, each part
    /// with its own workspace after batch-norm's scratch.
    private func channelParts(_ c: LayerPass, _ p: LayerPass,
                              _ body: (inout mc_conv2d_shape, Int32, Int32, UnsafeMutablePointer<Float>) -> Void) {
        var shape = convolution.shape(batch: c.batch, input: c.inputShape)
        let size = mc_conv_bn_relu_pool_workspace_size(&shape), planeSize = p.inputCount / norm.channels
        let split = channels(batch: p.batch, planeSize: planeSize, threads: p.threads)
        let base = p.scratch + affineScratch(p.inputShape, batch: p.batch, threads: p.threads)
        split.forEach { range in
            var part = shape
            body(&part, Int32(range.lowerBound), Int32(range.upperBound), base + range.lowerBound / split.size * size)
        }
    }

    /// `c`: the convolution node's pass (the model's input, the convolution's parameters and their gradient);
    /// `p`: the run's pass from the batch-norm on (``LayerFusion/pass(norm:pool:last:)``).
    func forward(convolution c: LayerPass, block p: LayerPass) {
        let a = norm.affine(p), count = norm.channels, bias = c.theta + convolution.biasOffset
        var momentum: Float = 0, runningMean: UnsafeMutablePointer<Float>? = nil, runningVariance: UnsafeMutablePointer<Float>? = nil
        if case .training(let m) = p.normalization { (momentum, runningMean, runningVariance) = (m, p.state, p.state + count) }
        channelParts(c, p) { shape, c0, c1, workspace in
            mc_conv_bn_relu_pool_forward(&shape, c0, c1, norm.epsilon, momentum, c.x, c.theta, bias, a.gamma, a.beta, p.y,
                                         p.savedInts, p.saved, p.saved + count, runningMean, runningVariance, workspace)
        }
    }

    func backward(convolution c: LayerPass, block p: LayerPass) {
        let a = norm.affine(p), count = norm.channels, bias = c.theta + convolution.biasOffset
        channelParts(c, p) { shape, c0, c1, workspace in
            mc_conv_bn_relu_pool_backward(&shape, c0, c1, c.x, c.theta, bias, p.saved, p.saved + count, a.gamma, p.savedInts,
                                          p.dy, c.gradient, c.gradient + convolution.biasOffset, a.gradientGamma,
                                          a.gradientBeta, workspace)
        }
    }

    /// The convolution's output and its R-derivative, in the convolution node's R-memory.
    private func outputs(_ c: LayerPass, _ p: LayerPass) -> (z: UnsafeMutablePointer<Float>, Rz: UnsafeMutablePointer<Float>,
                                                             Rdz: UnsafeMutablePointer<Float>) {
        let count = p.batch * p.inputCount
        return (c.rSaved, c.rSaved + count, c.rSaved + 2 * count)
    }

    func rForward(convolution c: LayerPass, block p: LayerPass) {
        let (z, Rz, _) = outputs(c, p)
        convolution.forward(c.replacing(y: z))
        convolution.rForward(c.replacing(Ry: Rz))
        block.rForward(p.replacing(x: z, Rx: Rz))
    }

    func rBackward(convolution c: LayerPass, block p: LayerPass) {
        let (z, Rz, Rdz) = outputs(c, p)
        block.rBackward(p.replacing(x: z, Rx: Rz, Rdx: Rdz))
        convolution.rBackward(c.replacing(Rdy: Rdz))
    }
}

extension LayerPass {
    /// This pass with some of its buffers swapped for others.
    func replacing(x: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>? = nil, Rx: UnsafePointer<Float>? = nil,
                   Ry: UnsafeMutablePointer<Float>? = nil, Rdy: UnsafePointer<Float>? = nil,
                   Rdx: UnsafeMutablePointer<Float>? = nil) -> LayerPass {
        LayerPass(batch: batch, inputShape: inputShape, outputShape: outputShape, normalization: normalization, threads: threads,
                  x: x ?? self.x, y: y ?? self.y, theta: theta, state: state, saved: saved, savedInts: savedInts,
                  rSaved: rSaved, scratch: scratch, dy: dy, dx: dx, gradient: gradient, v: v, Rx: Rx ?? self.Rx,
                  Ry: Ry ?? self.Ry, Rdy: Rdy ?? self.Rdy, Rdx: Rdx ?? self.Rdx, hv: hv)
    }
}
