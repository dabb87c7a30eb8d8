import CKernels

/// `groups` independent ``Linear`` layers side by side: the batch is `groups` equal blocks of samples, and
/// block t goes through layer t. The parameters are the layers' own, one after the other, each its weight
/// `[outputs, inputs]` then its bias `[outputs]`.
///
/// A model stacked across tasks (``ModelStack``) has one in place of each ``Linear``. Every group's products
/// are the calls the layer makes on its own block, so each group's outputs, gradients and R-derivatives are
/// the unstacked layer's to the bit.
public struct GroupedLinear: Layer {
    public var backwardReads: BackwardReads { .input }
    public let groups: Int
    /// The layer every group is a copy of.
    public let linear: Linear

    public init(groups: Int, _ linear: Linear) throws {
        guard groups >= 1 else { throw MetaCoreError.argument("GroupedLinear needs at least 1 group, got \(groups)") }
        self.groups = groups
        self.linear = linear
    }

    public func outputShape(for input: [Int]) throws -> [Int] { try linear.outputShape(for: input) }

    public var parameterShapes: [(name: String, shape: [Int])] { [("groups", [groups, groupSize])] }

    /// Each group initialised as ``linear`` is, one after the other from `random`.
    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {
        for t in 0 ..< groups {
            linear.initialize(UnsafeMutableBufferPointer(rebasing: parameters[t * groupSize ..< (t + 1) * groupSize]), using: &random)
        }
    }

    private var weights: Int { linear.outputs * linear.inputs }
    /// One group's parameters: its weight, then its bias.
    private var groupSize: Int { weights + linear.outputs }

    /// Calls `body` for each group with its samples' count and the offsets of its block: of inputs, outputs
    /// and parameters.
    private func forEachGroup(_ p: LayerPass, _ body: (_ n: Int32, _ input: Int, _ output: Int, _ parameters: Int) -> Void) {
        let n = Int(blockSize(p))
        for t in 0 ..< groups { body(Int32(n), t * n * linear.inputs, t * n * linear.outputs, t * groupSize) }
    }

    /// Samples per group.
    private func blockSize(_ p: LayerPass) -> Int32 {
        precondition(p.batch % groups == 0, "a batch of \(p.batch) samples does not split into \(groups) equal groups")
        return Int32(p.batch / groups)
    }

    /// Where the groups share their parameters (``LayerPass/sharesParameters``: a stack of tasks at the
    /// meta-parameters), the products with the weight run over all groups at once, those with a group's own
    /// operands group by group, all as the groups' own calls compute them (the `_shared` kernels).
    public func forward(_ p: LayerPass) {
        let (i, o) = (Int32(linear.inputs), Int32(linear.outputs))
        if p.sharesParameters {
            return mc_linear_forward_shared(Int32(groups), blockSize(p), i, o, p.x, p.theta, p.theta + weights, p.y)
        }
        forEachGroup(p) { n, x, y, w in mc_linear_forward(n, i, o, p.x + x, p.theta + w, p.theta + w + weights, p.y + y) }
    }

    public func backward(_ p: LayerPass) {
        let (i, o) = (Int32(linear.inputs), Int32(linear.outputs))
        if p.sharesParameters {
            return mc_linear_backward_shared(Int32(groups), blockSize(p), i, o, p.x, p.theta, p.dy, p.dx, p.gradient,
                                             p.gradient + weights, groupSize)
        }
        forEachGroup(p) { n, x, y, w in
            mc_linear_backward(n, i, o, p.x + x, p.theta + w, p.dy + y, p.dx.map { $0 + x }, p.gradient + w, p.gradient + w + weights)
        }
    }

    public func rForward(_ p: LayerPass) {
        let (i, o) = (Int32(linear.inputs), Int32(linear.outputs))
        if p.sharesParameters {
            return mc_linear_rforward_shared(Int32(groups), blockSize(p), i, o, p.x, p.Rx, p.theta, p.v, p.v + weights, p.Ry, groupSize)
        }
        forEachGroup(p) { n, x, y, w in
            mc_linear_rforward(n, i, o, p.x + x, p.Rx.map { $0 + x }, p.theta + w, p.v + w, p.v + w + weights, p.Ry + y)
        }
    }

    public func rBackward(_ p: LayerPass) {
        let (i, o) = (Int32(linear.inputs), Int32(linear.outputs))
        if p.sharesParameters {
            return mc_linear_rbackward_shared(Int32(groups), blockSize(p), i, o, p.x, p.Rx, p.theta, p.v, p.dy, p.Rdy, p.Rdx,
                                              p.hv, p.hv + weights, groupSize)
        }
        forEachGroup(p) { n, x, y, w in
            mc_linear_rbackward(n, i, o, p.x + x, p.Rx.map { $0 + x }, p.theta + w, p.v + w, p.dy + y, p.Rdy + y,
                                p.Rdx.map { $0 + x }, p.hv + w, p.hv + w + weights)
        }
    }
}
