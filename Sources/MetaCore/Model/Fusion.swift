import CKernels

/// A run of a model's nodes that a ``Workspace`` executes as one step: batch-norm, then ReLU and 2x2
/// max-pooling in either order (Conv-4's block after each convolution pools first), through kernels that
/// never write the full-size intermediate values or their gradients.
///
/// Fusion is execution only: the model, its nodes, parameter names and checkpoints are the same, and so are
/// the results — the forward and R-forward passes to the bit, the backward passes up to the order in which
/// their sums add up. ``Workspace/fusesLayers`` switches it off.
struct LayerFusion: Sendable {
    /// The nodes it runs: the batch-norm, then the ReLU and the max-pool.
    let nodes: ClosedRange<Int>
    /// The max-pool's node, whose saved winners the fused step keeps.
    let pool: Int
    let step: BatchNormReLUPool

    /// The fusable runs of `model`: a BatchNorm of images, then a ReLU and a MaxPool(2) in either order, each
    /// reading only the node before; neither intermediate value read by any other node or output by the
    /// model, and no node tied to another's parameters. (ReLU and max-pooling commute exactly: the same
    /// values, the same winners wherever ReLU lets anything through.)
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
            found.append(LayerFusion(nodes: a ... a + 2, pool: pool, step: BatchNormReLUPool(norm: norm)))
            a += 2
        }
        return found
    }

    /// The values that exist only inside the run (batch-norm's output and the next node's): a workspace
    /// running it fused gives them no memory.
    func interiorValues(of model: Model) -> [Int] { [model.value(ofNode: nodes.lowerBound), model.value(ofNode: nodes.lowerBound + 1)] }

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
