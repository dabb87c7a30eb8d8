import CKernels
import Glibc

/// The memory a ``Model``'s passes run in, and the entry point for evaluating it: the loss, the gradient and
/// the exact Hessian-vector product at a given parameter vector on a given batch.
///
/// A workspace keeps every buffer between calls (activations, their gradients and R-derivatives, what the
/// layers save, convolution scratch), growing them only when a larger batch arrives, so that repeated calls —
/// the inner loops of meta-learning — do not allocate. It is not thread-safe: give each thread its own.
///
/// The BatchNorm mode is ``normalization``; the running statistics it reads (inference) or updates
/// (training) are ``state``, laid out by the model's ``Model/stateLayout``.
public final class Workspace {
    public let model: Model
    /// How BatchNorm layers get their statistics (default: MAML's transductive batch statistics).
    public var normalization: Normalization = .transductive
    /// The model's non-trainable state (BatchNorm running statistics), initially ``Model/initialState()``.
    public var state: [Float]
    /// Threads a pass may use: layers whose samples are independent split the batch across them
    /// (``BatchSplit``). 1 (the default) when tasks run concurrently, each on its own workspace, as
    /// ``TaskRunner`` runs a meta-batch; a lone large task gets them all. Values below 1 count as 1. With more
    /// than one, the passes set BLAS to one thread (``BLAS/threads``, process-wide), as the first workspace does.
    public var threads = 1
    /// Whether the passes run batch-norm, ReLU and 2x2 max-pooling in a row as one fused step (``LayerFusion``),
    /// with the convolution before it when that convolution reads the model's input:
    /// the same results (the backward passes' sums added in another order) in less time and memory. On by
    /// default; `.inference` mode runs unfused.
    public var fusesLayers = true {
        didSet { if fusesLayers != oldValue { for pass in held { pass.buffers.free() }; held = [] } }
    }
    /// The model's fusable runs.
    private let fusions: [LayerFusion]
    /// Whether a fused run takes the convolution of the model's input that it starts with (on by default; off,
    /// that convolution runs on its own, for comparisons).
    var fusesInputLayer = true {
        didSet { if fusesInputLayer != oldValue { for pass in held { pass.buffers.free() }; held = [] } }
    }
    /// Whether gradient passes also compute the derivative with respect to the model's input
    /// (``inputGradient``), and Hessian-vector products that derivative's own derivative along the direction
    /// (``inputHessianVector``): what a learner needs that runs this model on another model's outputs and
    /// carries the derivatives back into that model (OML on a representation's features). For a model of one
    /// input; off by default (it costs the first layer's input gradient).
    public var differentiatesInput = false
    /// dL/dx `[N, ...input shape]` of the last gradient pass or Hessian-vector product, when
    /// ``differentiatesInput``.
    public private(set) var inputGradient: [Float] = []
    /// ∂⟨∇_θ L, v⟩/∂x `[N, ...input shape]` of the last Hessian-vector product along `v` (the derivative of
    /// ``inputGradient`` along `v`), when ``differentiatesInput``.
    public private(set) var inputHessianVector: [Float] = []

    /// Buffers laid out for `batch` samples. Allocated lazily by need: a forward-only evaluation never pays
    /// for gradient or R-operator memory. Offsets are per value (activations and their gradients and
    /// R-derivatives; -1 for a model input, which needs no gradient (unless ``differentiatesInput``) or
    /// R-derivative) or per node.
    private struct Layout {
        var batch = 0, threads = 1, fused = false, fusesInputLayer = false, inputGradient = false
        /// The runs the passes fuse, and for each node the run it belongs to.
        var fusions: [LayerFusion] = [], fusionOfNode: [Int?] = []
        var ints = 0, rOperator = 0
        /// The plan in use. Two are laid out: everything kept (`kept`), for the R-passes that read it and for
        /// held passes; or, for a forward pass or a gradient alone (`transient`), each activation only until the
        /// last pass that reads it (``Layer/backwardReads``) and each gradient only from its first write to its
        /// producer's backward pass, memory shared between buffers that are not live at once.
        var plan = PassPlan(), kept = PassPlan(), transient = PassPlan()
        var saved: [Int] = [], probs = 0, scratch = 0, savedInts: [Int] = []
        /// The R-passes' buffers, all kept: R-activations, what layers keep between their R-passes, and the
        /// R-derivatives of the gradients.
        var rActivation: [Int] = [], rSaved: [Int] = [], r = GradientPlan()
    }

    /// Where a pass's activations go in the forward arena (a one-input model reads its input in place; several
    /// inputs are copied out of the batch) and its gradients in the backward arena.
    private struct PassPlan {
        var forward = 0, activation: [Int] = [], backward = GradientPlan()
    }

    /// Where gradients (or their R-derivatives) go: each value's own buffer (`gradient`); where each node writes
    /// the gradient for each of its inputs (`edge`: the value's own buffer for its last reader, a buffer of the
    /// edge's own for the others, whose contents, `extra`, are added to the value's before its producer's
    /// backward pass; -1 for a model input); where a tied node that is not its parameters' last user writes
    /// their gradient (H·v), to be added in (`tied`); `size` floats in all.
    private struct GradientPlan {
        var size = 0, gradient: [Int] = [], edge: [[Int]] = [], extra: [[Int]] = [], tied = 0
    }

    /// Parameter-sized vectors the learners reuse between calls (an inner step's gradient, H·v), so that a
    /// workspace's steady-state meta-gradients do not allocate them afresh.
    var innerGradient: [Float] = [], hessianVector: [Float] = []

    /// A gradient pass kept for Hessian-vector products at the same point and batch (second-order MAML's
    /// inner steps): its buffers, its gradient, and what it was computed from. Never in `.training` mode,
    /// whose passes update the running statistics.
    private struct HeldPass {
        let parameters: [Float], batch: Batch, normalization: Normalization, state: [Float], threads: Int
        let differentiatesInput: Bool
        let value: LossValue
        var buffers: PassBuffers
    }
    /// Held passes, oldest first; none of them shares buffers with ``live`` between calls.
    private var held: [HeldPass] = []
    /// How many of its latest gradient passes the workspace keeps, each in buffers of its own, so that a
    /// Hessian-vector product at the same point and batch starts from it (its R-passes only). Learners whose
    /// products revisit their inner steps set it to their step count (second-order MAML, Meta-SGD, ANIL, OML)
    /// and run their query passes in ``onQuerySet(_:)``. 0 by default.
    public var heldPasses = 0 { didSet { evictHeldPasses() } }
    /// The most memory held passes may take (default 256 MiB): the oldest are dropped beyond it, and their
    /// products recompute the pass. A pass larger than this on its own is not kept.
    public var heldPassBytes = 256 << 20 { didSet { evictHeldPasses() } }
    /// How many Hessian-vector products started from a held pass (for the tests).
    private(set) var reusedPasses = 0
    /// A parameter vector of a stacked model (``Model/groups`` > 1) that holds the same parameters in every group —
    /// ``ModelStack/stack(_:into:)``'s result, which a meta-step's inner loops start from. Passes at this very vector
    /// (the same storage, so the same values) tell the layers (``LayerPass/sharesParameters``), which then run the
    /// products with the shared weights over all groups at once. Their results are the same to the bit; `nil`
    /// (the default) leaves every pass group by group.
    public var groupsShareParameters: [Float]?
    /// Whether the pass under way is at ``groupsShareParameters``.
    private var passSharesParameters = false
    private var queryWorkspace: Workspace?
    private var splitWorkspaces: (headLayers: Int, body: Workspace, head: Workspace)?
    /// Bytes of the buffers the last passes ran in, scratch space aside (for the tests).
    var bufferBytes: Int { live.bytes + MemoryLayout<Float>.stride * rArena.capacity }

    private var layout = Layout()
    /// The buffers the passes run in; the R-passes' own buffers and the layers' scratch space are not kept
    /// with a held pass.
    private var live = PassBuffers(), rArena = Arena<Float>(), scratchArena = Arena<Float>()
    /// Stands in for buffers a pass does not use (never read or written).
    private let placeholder = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    /// For each node, whether its backward passes write its parameters' slice of the gradient (and of H·v)
    /// directly: true but for the tied uses of a tensor other than its last one, which run first in reverse.
    private let writesParameters: [Bool]

    public init(model: Model) {
        self.model = model
        self.state = model.initialState()
        var lastUse: [Int: Int] = [:]
        for (index, node) in model.nodes.enumerated() { lastUse[node.owner] = index }
        writesParameters = model.nodes.indices.map { lastUse[model.nodes[$0].owner] == $0 }
        fusions = LayerFusion.find(in: model)
        _ = Self.singleThreadedBLAS
    }

    /// MetaCore runs tasks, and the parts of a lone task's batch, on threads of its own; OpenBLAS's threads
    /// are switched off once, when the first workspace is made. Called from several threads at once, the
    /// threaded OpenBLAS (0.3.21) runs some products on fewer threads depending on timing, so results would
    /// vary in the last bits from run to run — and its threads do not speed up the small products of a task.
    /// ``BLAS/threads`` can still be set afterwards; split passes set it back to 1.
    private static let singleThreadedBLAS: Void = { BLAS.threads = 1 }()

    deinit {
        live.free(); rArena.free(); scratchArena.free()
        for pass in held { pass.buffers.free() }
        placeholder.deallocate()
    }

    /// Runs `body` with a second workspace for the same model that follows this one's ``normalization``,
    /// ``threads``, ``fusesLayers`` and ``state`` (copied in, and the state copied back): the learners run their passes on a
    /// task's query set there, so that this workspace keeps its last pass on the support set for the
    /// Hessian-vector product at the same point. Its buffers are kept between calls like this workspace's; its
    /// scratch space (convolution workspaces) is this one's, lent for the call.
    public func onQuerySet<T>(_ body: (Workspace) throws -> T) rethrows -> T {
        let other = queryWorkspace ?? Workspace(model: model)
        queryWorkspace = other
        other.normalization = normalization
        other.threads = threads
        other.fusesLayers = fusesLayers
        other.state = state
        // The two never run at once: the query passes use this workspace's scratch (convolution workspaces).
        swap(&scratchArena, &other.scratchArena)
        defer { state = other.state; swap(&scratchArena, &other.scratchArena) }
        return try body(other)
    }

    /// Runs `body` with workspaces for the two pieces of ``Model/split(headLayers:)``, made on the first call
    /// and kept, that follow this one's ``normalization``, ``threads``, ``fusesLayers`` and ``state`` (each
    /// piece its slice of it, copied in and back): a learner that adapts only the head can run the body once
    /// on a task's samples and the head alone on their features.
    public func onSplit<T>(headLayers: Int, _ body: (_ body: Workspace, _ head: Workspace) throws -> T) throws -> T {
        let pieces: (body: Workspace, head: Workspace)
        if let split = splitWorkspaces, split.headLayers == headLayers {
            pieces = (split.body, split.head)
        } else {
            let (bodyModel, headModel) = try model.split(headLayers: headLayers)
            pieces = (Workspace(model: bodyModel), Workspace(model: headModel))
            splitWorkspaces = (headLayers, pieces.body, pieces.head)
        }
        let cut = pieces.body.model.stateLayout.count
        for (piece, slice) in [(pieces.body, state[..<cut]), (pieces.head, state[cut...])] {
            piece.normalization = normalization
            piece.threads = threads
            piece.fusesLayers = fusesLayers
            piece.state = Array(slice)
        }
        defer { state = pieces.body.state + pieces.head.state }
        return try body(pieces.body, pieces.head)
    }

    // MARK: - Public passes

    /// The loss (and accuracy, for labels) of the model at `parameters` on `batch`: a forward pass only.
    public func loss(at parameters: [Float], on batch: Batch) throws -> LossValue {
        try run(.forward, parameters: parameters, batch: batch, direction: nil, gradient: nil, hv: nil)
    }

    /// The loss, and its gradient with respect to the parameters written into `gradient` (resized to the
    /// parameter count if needed).
    @discardableResult
    public func gradient(at parameters: [Float], on batch: Batch, into gradient: inout [Float]) throws -> LossValue {
        fit(&gradient)
        return try gradient.withUnsafeMutableBufferPointer { g in
            try run(.backward, parameters: parameters, batch: batch, direction: nil, gradient: g.baseAddress, hv: nil)
        }
    }

    /// The exact Hessian-vector product `H v` of the loss at `parameters` on `batch`, by one forward, backward,
    /// R-forward and R-backward pass (Pearlmutter 1994) — no finite differences. Writes `H v` into `hv` and
    /// the gradient into `gradient`; both are resized to the parameter count if needed.
    @discardableResult
    public func hessianVectorProduct(at parameters: [Float], on batch: Batch, direction: [Float],
                                     into hv: inout [Float], gradient: inout [Float]) throws -> LossValue {
        try model.layout.check(direction, "direction vector")
        fit(&hv); fit(&gradient)
        return try hv.withUnsafeMutableBufferPointer { h in
            try gradient.withUnsafeMutableBufferPointer { g in
                try run(.rOperator, parameters: parameters, batch: batch, direction: direction,
                        gradient: g.baseAddress, hv: h.baseAddress)
            }
        }
    }

    /// `H v` alone (see ``hessianVectorProduct(at:on:direction:into:gradient:)``). At the point of a held pass it
    /// does not copy out the gradient.
    @discardableResult
    public func hessianVectorProduct(at parameters: [Float], on batch: Batch, direction: [Float],
                                     into hv: inout [Float]) throws -> LossValue {
        guard heldPass(parameters: parameters, batch: batch) != nil else {
            var gradient: [Float] = []
            return try hessianVectorProduct(at: parameters, on: batch, direction: direction, into: &hv, gradient: &gradient)
        }
        try model.layout.check(direction, "direction vector")
        fit(&hv)
        return try hv.withUnsafeMutableBufferPointer { h in
            try run(.rOperator, parameters: parameters, batch: batch, direction: direction, gradient: nil, hv: h.baseAddress)
        }
    }

    /// The model's outputs `[N, ...output shape]` (logits for classification) for `inputs` `[N, ...]`.
    public func predict(at parameters: [Float], inputs: Tensor) throws -> Tensor {
        let n = try check(inputs: inputs, parameters: parameters)
        reserve(batch: n, stage: .forward, transient: true)
        inputs.scalars.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                forwardLayers(batch: n, input: x.baseAddress!, theta: p.baseAddress ?? UnsafePointer(placeholder))
            }
        }
        let count = n * model.outputShape.reduce(1, *)
        let output = Array(UnsafeBufferPointer(start: live.forward.base + layout.plan.activation[model.output], count: count))
        return try Tensor(shape: [n] + model.outputShape, scalars: output)
    }

    /// A loss the caller defines on the model's outputs (an episode's metric loss, say): runs the forward pass
    /// on `inputs` and calls `loss` with the outputs `[N, ...output shape]` and, when a gradient is wanted,
    /// a buffer of the same size for dL/d(outputs) that `loss` must fill. Returns what `loss` returns.
    public typealias OutputLoss = (_ outputs: UnsafeBufferPointer<Float>, _ outputGradient: UnsafeMutableBufferPointer<Float>?) throws -> LossValue

    /// The value of an ``OutputLoss`` at `parameters` on `inputs`: a forward pass only.
    public func loss(at parameters: [Float], inputs: Tensor, _ loss: OutputLoss) throws -> LossValue {
        try runOutputLoss(parameters: parameters, inputs: inputs, gradient: nil, loss)
    }

    /// An ``OutputLoss`` and its gradient with respect to the parameters, written into `gradient` (resized
    /// to the parameter count if needed), by one forward and one backward pass.
    @discardableResult
    public func gradient(at parameters: [Float], inputs: Tensor, into gradient: inout [Float], _ loss: OutputLoss) throws -> LossValue {
        fit(&gradient)
        return try gradient.withUnsafeMutableBufferPointer { g in
            try runOutputLoss(parameters: parameters, inputs: inputs, gradient: g.baseAddress, loss)
        }
    }

    private func runOutputLoss(parameters: [Float], inputs: Tensor, gradient: UnsafeMutablePointer<Float>?,
                               _ loss: OutputLoss) throws -> LossValue {
        let n = try check(inputs: inputs, parameters: parameters)
        reserve(batch: n, stage: gradient == nil ? .forward : .backward, transient: true)
        let count = n * model.outputShape.reduce(1, *), last = model.output
        return try parameters.withUnsafeBufferPointer { p in
            try inputs.scalars.withUnsafeBufferPointer { x in
                let theta = p.baseAddress ?? UnsafePointer(placeholder)
                forwardLayers(batch: n, input: x.baseAddress!, theta: theta)
                let outputs = UnsafeBufferPointer(start: live.forward.base + layout.plan.activation[last], count: count)
                guard let gradient else { return try loss(outputs, nil) }
                let value = try loss(outputs, UnsafeMutableBufferPointer(start: live.backward.base + layout.plan.backward.gradient[last], count: count))
                sweep(.backward, batch: n, input: x.baseAddress!, theta: theta, v: nil, gradient: gradient, hv: nil)
                return value
            }
        }
    }

    /// Checks a bare input tensor and the parameters against the model; returns the batch size.
    private func check(inputs: Tensor, parameters: [Float]) throws -> Int {
        guard let n = inputs.shape.first, n > 0 else { throw MetaCoreError(.emptyBatch, "no inputs (0 samples)") }
        guard Array(inputs.shape.dropFirst()) == model.inputShape else {
            throw MetaCoreError.shape("inputs are \(describe(Array(inputs.shape.dropFirst()))) per sample but the model takes \(describe(model.inputShape))")
        }
        try model.layout.check(parameters, "parameter vector")
        try checkState()
        return n
    }

    // MARK: - The passes

    private enum Stage: Int, Comparable {
        case forward, backward, rOperator
        static func < (a: Stage, b: Stage) -> Bool { a.rawValue < b.rawValue }
    }

    private func run(_ stage: Stage, parameters: [Float], batch: Batch, direction: [Float]?,
                     gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?) throws -> LossValue {
        try model.layout.check(parameters, "parameter vector")
        try batch.check(against: model)
        try checkState()
        guard !differentiatesInput || model.inputShapes.count == 1 else {
            throw MetaCoreError.argument("the input gradient is computed for a model of one input; this one has \(model.inputShapes.count)")
        }
        let n = batch.count, threads = max(1, self.threads)
        // A Hessian-vector product at the point of a held pass starts from it: its buffers are swapped in for
        // the R-passes, which read them and change neither, and swapped back out.
        let reuse = stage == .rOperator ? heldPass(parameters: parameters, batch: batch) : nil
        passSharesParameters = model.groups > 1 && groupsShareParameters.map { shared in
            shared.count == parameters.count
                && shared.withUnsafeBufferPointer { a in parameters.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress } }
        } ?? false
        defer { passSharesParameters = false }
        precondition(gradient != nil || reuse != nil || stage < .backward, "a gradient pass needs somewhere to write the gradient")
        if let reuse { swap(&live, &held[reuse].buffers) }
        defer { if let reuse { swap(&live, &held[reuse].buffers) } }
        // A forward pass, or a gradient pass that is neither followed by R-passes nor held, keeps its buffers only briefly.
        reserve(batch: n, stage: stage, transient: stage == .forward || stage == .backward && (heldPasses == 0 || isTraining))

        let value = parameters.withUnsafeBufferPointer { p in
            (direction ?? []).withUnsafeBufferPointer { v in
                batch.inputs.scalars.withUnsafeBufferPointer { x in
                    let theta = p.baseAddress ?? UnsafePointer(placeholder), input = x.baseAddress!
                    let value: LossValue
                    if let reuse {
                        value = held[reuse].value
                        reusedPasses += 1
                        if let gradient { live.gradient.withUnsafeBufferPointer { gradient.update(from: $0.baseAddress!, count: $0.count) } }
                    } else {
                        forwardLayers(batch: n, input: input, theta: theta)
                        value = lossForward(batch, gradient: stage >= .backward)
                        if stage >= .backward {
                            sweep(.backward, batch: n, input: input, theta: theta, v: nil, gradient: gradient, hv: nil)
                        }
                    }
                    if stage >= .rOperator {
                        sweep(.rForward, batch: n, input: input, theta: theta, v: v.baseAddress, gradient: nil, hv: nil)
                        lossRBackward(batch)
                        sweep(.rBackward, batch: n, input: input, theta: theta, v: v.baseAddress, gradient: nil, hv: hv)
                    }
                    if differentiatesInput {
                        let count = batch.inputs.count
                        if stage >= .backward { inputGradient = inputDerivative(layout.plan.backward, in: live.backward.base, count: count) }
                        if stage >= .rOperator { inputHessianVector = inputDerivative(layout.r, in: rArena.base, count: count) }
                    }
                    return value
                }
            }
        }
        if reuse == nil, heldPasses > 0, stage >= .backward, let gradient, !isTraining {
            hold(parameters: parameters, batch: batch, threads: threads, value: value, gradient: gradient)
        }
        return value
    }

    /// The held pass at `parameters` on `batch` under the current settings, if there is one.
    private func heldPass(parameters: [Float], batch: Batch) -> Int? {
        let threads = max(1, self.threads)
        return held.lastIndex {
            $0.parameters == parameters && $0.batch == batch && $0.normalization == normalization && $0.state == state
                && $0.threads == threads && $0.differentiatesInput == differentiatesInput
        }
    }

    /// Keeps the pass just run (the live buffers, with a copy of its gradient). The next pass runs in the
    /// buffers of the oldest held pass if keeping it goes beyond ``heldPasses`` or ``heldPassBytes``, in new
    /// buffers otherwise.
    private func hold(parameters: [Float], batch: Batch, threads: Int, value: LossValue, gradient: UnsafeMutablePointer<Float>) {
        if live.gradient.count != model.parameterCount { live.gradient = [Float](repeating: 0, count: model.parameterCount) }
        guard live.bytes <= heldPassBytes else { return }
        live.gradient.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: gradient, count: $0.count) }
        held.append(HeldPass(parameters: parameters, batch: batch, normalization: normalization, state: state,
                             threads: threads, differentiatesInput: differentiatesInput, value: value, buffers: live))
        live = overHeldLimits ? held.removeFirst().buffers : PassBuffers()
        evictHeldPasses()
    }

    private var overHeldLimits: Bool { held.count > heldPasses || held.reduce(0) { $0 + $1.buffers.bytes } > heldPassBytes }

    /// Frees the oldest held passes beyond ``heldPasses`` and ``heldPassBytes``.
    private func evictHeldPasses() {
        while !held.isEmpty && overHeldLimits { held.removeFirst().buffers.free() }
    }

    /// Whether BatchNorm layers update their running statistics (`.training` mode).
    private var isTraining: Bool { if case .training = normalization { true } else { false } }

    /// The loss of the last activation against the batch's targets; with `gradient`, also dL/dz. A model of
    /// several groups (``Model/groups``) has each group's loss on its block of samples, and their sum.
    private func lossForward(_ batch: Batch, gradient: Bool) -> LossValue {
        let groups = model.groups, n = batch.count / groups, width = model.outputShape.reduce(1, *)
        let z = live.forward.base + layout.plan.activation[model.output], probs = live.forward.base + layout.probs
        let dz = live.backward.base + layout.plan.backward.gradient[model.output]
        func value(_ t: Int) -> LossValue {
            let at = t * n * width
            switch batch.targets {
            case .labels(let labels):
                return labels.withUnsafeBufferPointer { all in
                    var correct: Int32 = 0
                    let labels = all.baseAddress! + t * n
                    let loss = mc_softmax_xent_forward(Int32(n), Int32(width), z + at, labels, probs + at, &correct)
                    if gradient { mc_softmax_xent_backward(Int32(n), Int32(width), probs + at, labels, dz + at) }
                    return LossValue(loss: loss, correct: Int(correct), count: n)
                }
            case .values(let targets):
                return targets.scalars.withUnsafeBufferPointer { all in
                    let loss = mc_mse_forward(n * width, z + at, all.baseAddress! + at)
                    if gradient { mc_mse_backward(n * width, z + at, all.baseAddress! + at, dz + at) }
                    return LossValue(loss: loss, correct: nil, count: n)
                }
            }
        }
        guard groups > 1 else { return value(0) }
        let values = (0 ..< groups).map(value)
        let correct = values.compactMap(\.correct)
        return LossValue(loss: values.reduce(0) { $0 + $1.loss }, correct: correct.isEmpty ? nil : correct.reduce(0, +),
                         count: batch.count, groups: values)
    }

    /// The R-derivative of dL/dz: the loss's Hessian with respect to its input applied to Rz (group by group).
    private func lossRBackward(_ batch: Batch) {
        let groups = model.groups, n = batch.count / groups, width = model.outputShape.reduce(1, *), last = model.output
        let Rz = rArena.base + layout.rActivation[last], Rdz = rArena.base + layout.r.gradient[last]
        for t in 0 ..< groups {
            let at = t * n * width
            switch batch.targets {
            case .labels: mc_softmax_xent_rbackward(Int32(n), Int32(width), live.forward.base + layout.probs + at, Rz + at, Rdz + at)
            case .values: mc_mse_rbackward(n * width, Rz + at, Rdz + at)
            }
        }
    }

    private func forwardLayers(batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>) {
        sweep(.forward, batch: n, input: input, theta: theta, v: nil, gradient: nil, hv: nil)
    }

    private enum Direction { case forward, backward, rForward, rBackward }

    /// One pass of every node, in order (forward, R-forward) or in reverse (backward, R-backward).
    private func sweep(_ direction: Direction, batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>,
                       v: UnsafePointer<Float>?, gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?) {
        // Split passes call BLAS from several threads at once: single-threaded BLAS keeps them deterministic.
        if layout.threads > 1 && BLAS.threads != 1 { BLAS.threads = 1 }
        if direction == .forward && model.inputShapes.count > 1 { unpackInputs(input, batch: n) }
        state.withUnsafeMutableBufferPointer { s in
            let reverse = direction == .backward || direction == .rBackward, last = model.nodes.count - 1
            // The gradients a reverse pass writes (the gradient, or its R-derivative), and the parameter output.
            let gradients = direction == .backward ? (layout.plan.backward, live.backward.base, gradient)
                : direction == .rBackward ? (layout.r, rArena.base, hv) : nil
            for step in 0 ... last {
                let l = reverse ? last - step : step
                let node = model.nodes[l], output = model.value(ofNode: l)
                // A value read by several nodes: every reader's gradient is in, add them up.
                if let (plan, base, _) = gradients, !plan.extra[output].isEmpty {
                    let count = n * model.shapes[output].reduce(1, *)
                    for edge in plan.extra[output] { add(base + edge, into: base + plan.gradient[output], count: count) }
                }
                if layout.fused, let f = layout.fusionOfNode[l] {
                    let fusion = layout.fusions[f], (first, last) = (fusion.nodes.lowerBound, fusion.nodes.upperBound)
                    guard l == (reverse ? last : first) else { continue }   // the run's other nodes: done with it
                    func nodePass(_ k: Int) -> LayerPass {
                        pass(k, batch: n, input: input, theta: theta, state: s.baseAddress, v: v, gradient: gradient, hv: hv)
                    }
                    let p = LayerFusion.pass(norm: nodePass(fusion.norm), pool: nodePass(fusion.pool), last: nodePass(last))
                    if let step = fusion.inputStep {
                        let c = nodePass(first)
                        switch direction {
                        case .forward: step.forward(convolution: c, block: p)
                        case .backward: step.backward(convolution: c, block: p)
                        case .rForward: step.rForward(convolution: c, block: p)
                        case .rBackward: step.rBackward(convolution: c, block: p)
                        }
                        continue
                    }
                    switch direction {
                    case .forward: fusion.step.forward(p)
                    case .backward: fusion.step.backward(p)
                    case .rForward: fusion.step.rForward(p)
                    case .rBackward: fusion.step.rBackward(p)
                    }
                    continue
                }
                switch node.step {
                case .layer(let layer):
                    let p = pass(l, batch: n, input: input, theta: theta, state: s.baseAddress, v: v, gradient: gradient, hv: hv)
                    switch direction {
                    case .forward: layer.forward(p)
                    case .backward: layer.backward(p)
                    case .rForward: layer.rForward(p)
                    case .rBackward: layer.rBackward(p)
                    }
                case .operation(let operation):
                    let p = operationPass(l, batch: n, input: input, theta: theta, state: s.baseAddress, v: v, gradient: gradient, hv: hv)
                    switch direction {
                    case .forward: operation.forward(p)
                    case .backward: operation.backward(p)
                    case .rForward: operation.rForward(p)
                    case .rBackward: operation.rBackward(p)
                    }
                }
                // A tied node that is not its parameters' last use wrote their gradient (H·v) aside: add it in.
                if !writesParameters[l], let (plan, base, target) = gradients, let target {
                    let range = model.parameterRange(ofLayer: node.owner)
                    add(base + plan.tied, into: target + range.lowerBound, count: range.count)
                }
            }
        }
    }

    private func add(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0 ..< count { target[i] += source[i] }
    }

    /// The gradient (or R-derivative) of the input, `count` values, from a reverse sweep's buffers: the sum
    /// over the input's readers (no producer's pass adds them up).
    private func inputDerivative(_ plan: GradientPlan, in base: UnsafeMutablePointer<Float>, count: Int) -> [Float] {
        var derivative = Array(UnsafeBufferPointer(start: base + plan.gradient[0], count: count))
        for edge in plan.extra[0] { for i in 0 ..< count { derivative[i] += base[edge + i] } }
        return derivative
    }

    /// Copies each input of a several-input model out of the packed batch into its own buffer.
    private func unpackInputs(_ input: UnsafePointer<Float>, batch n: Int) {
        let counts = model.inputShapes.map { $0.reduce(1, *) }, total = counts.reduce(0, +)
        var offset = 0
        for (k, count) in counts.enumerated() {
            mc_copy_blocks(Int32(n), Int32(count), input + offset, total, live.forward.base + layout.plan.activation[k], count)
            offset += count
        }
    }

    /// The activation of value `v`: the caller's input for a one-input model's input.
    private func activation(_ v: Int, input: UnsafePointer<Float>) -> UnsafePointer<Float> {
        v == 0 && model.inputShapes.count == 1 ? input : UnsafePointer(live.forward.base + layout.plan.activation[v])
    }

    /// The parameter and state offsets, and the gradient and H·v slices, node `l` works on.
    private func parameters(_ l: Int, gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?)
        -> (offset: Int, state: Int, gradient: UnsafeMutablePointer<Float>, hv: UnsafeMutablePointer<Float>) {
        let owner = model.nodes[l].owner
        let offset = model.parameterRange(ofLayer: owner).lowerBound, stateOffset = model.stateRange(ofLayer: owner).lowerBound
        if writesParameters[l] {
            return (offset, stateOffset, gradient.map { $0 + offset } ?? placeholder, hv.map { $0 + offset } ?? placeholder)
        }
        let hasBackward = live.backward.capacity > 0, hasR = rArena.capacity > 0
        return (offset, stateOffset, gradient != nil && hasBackward ? live.backward.base + layout.plan.backward.tied : placeholder,
                hv != nil && hasR ? rArena.base + layout.r.tied : placeholder)
    }

    /// The buffers of layer node `l` for a batch of `n`.
    private func pass(_ l: Int, batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>,
                      state: UnsafeMutablePointer<Float>?, v: UnsafePointer<Float>?,
                      gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?) -> LayerPass {
        let node = model.nodes[l], vin = node.inputs[0], vout = model.value(ofNode: l)
        let (offset, stateOffset, g, h) = parameters(l, gradient: gradient, hv: hv)
        let f = live.forward.base, b = live.backward.base, r = rArena.base
        let hasBackward = live.backward.capacity > 0, hasR = rArena.capacity > 0
        let backward = layout.plan.backward, edge = backward.edge[l][0], rEdge = layout.r.edge[l][0]
        return LayerPass(
            batch: n, inputShape: model.shapes[vin], outputShape: model.shapes[vout], normalization: normalization,
            threads: layout.threads,
            x: activation(vin, input: input), y: f + layout.plan.activation[vout],
            theta: theta + offset, state: (state ?? placeholder) + stateOffset,
            saved: f + layout.saved[l], savedInts: live.ints.base + layout.savedInts[l],
            rSaved: hasR ? r + layout.rSaved[l] : placeholder, scratch: scratchArena.base,
            dy: hasBackward ? UnsafePointer(b + backward.gradient[vout]) : UnsafePointer(placeholder),
            dx: hasBackward && edge >= 0 ? b + edge : nil,
            gradient: g,
            v: v.map { $0 + offset } ?? UnsafePointer(placeholder),
            Rx: hasR && layout.rActivation[vin] >= 0 ? UnsafePointer(r + layout.rActivation[vin]) : nil,
            Ry: hasR ? r + layout.rActivation[vout] : placeholder,
            Rdy: hasR ? UnsafePointer(r + layout.r.gradient[vout]) : UnsafePointer(placeholder),
            Rdx: hasR && rEdge >= 0 ? r + rEdge : nil,
            hv: h, sharesParameters: passSharesParameters)
    }

    /// The buffers of operation node `l` for a batch of `n`.
    private func operationPass(_ l: Int, batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>,
                               state: UnsafeMutablePointer<Float>?, v: UnsafePointer<Float>?,
                               gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?) -> OperationPass {
        let node = model.nodes[l], vout = model.value(ofNode: l)
        let (offset, stateOffset, g, h) = parameters(l, gradient: gradient, hv: hv)
        let f = live.forward.base, b = live.backward.base, r = rArena.base
        let hasBackward = live.backward.capacity > 0, hasR = rArena.capacity > 0
        return OperationPass(
            batch: n, inputShapes: node.inputs.map { model.shapes[$0] }, outputShape: model.shapes[vout],
            normalization: normalization, threads: layout.threads,
            x: node.inputs.map { activation($0, input: input) }, y: f + layout.plan.activation[vout],
            theta: theta + offset, state: (state ?? placeholder) + stateOffset,
            saved: f + layout.saved[l], savedInts: live.ints.base + layout.savedInts[l],
            rSaved: hasR ? r + layout.rSaved[l] : placeholder, scratch: scratchArena.base,
            dy: hasBackward ? UnsafePointer(b + layout.plan.backward.gradient[vout]) : UnsafePointer(placeholder),
            dx: layout.plan.backward.edge[l].map { hasBackward && $0 >= 0 ? b + $0 : nil },
            gradient: g,
            v: v.map { $0 + offset } ?? UnsafePointer(placeholder),
            Rx: node.inputs.map { hasR && layout.rActivation[$0] >= 0 ? UnsafePointer(r + layout.rActivation[$0]) : nil },
            Ry: hasR ? r + layout.rActivation[vout] : placeholder,
            Rdy: hasR ? UnsafePointer(r + layout.r.gradient[vout]) : UnsafePointer(placeholder),
            Rdx: layout.r.edge[l].map { hasR && $0 >= 0 ? r + $0 : nil },
            hv: h)
    }

    // MARK: - Memory

    /// Lays the buffers out for `n` samples and makes sure the arenas `stage` needs are large enough.
    private func reserve(batch n: Int, stage: Stage, transient: Bool = false) {
        let threads = max(1, self.threads), fused = fusesLayers && !fusions.isEmpty && normalization != .inference
        let inputLayer = fused && fusesInputLayer && !differentiatesInput
        if layout.batch != n || layout.threads != threads || layout.fused != fused || layout.fusesInputLayer != inputLayer
            || layout.inputGradient != differentiatesInput {
            // The fused input layer computes no input gradient: runs keep their convolutions only without one.
            let runs = !fused ? [] : inputLayer ? fusions : fusions.map(\.withoutConvolution)
            layout = Self.layout(model: model, batch: n, threads: threads, fusions: runs, inputGradient: differentiatesInput)
            layout.fusesInputLayer = inputLayer
        }
        layout.plan = transient ? layout.transient : layout.kept
        live.forward.reserve(layout.plan.forward)
        live.ints.reserve(layout.ints)
        scratchArena.reserve(layout.scratch)
        if stage >= .backward { live.backward.reserve(layout.plan.backward.size) }
        if stage >= .rOperator { rArena.reserve(layout.rOperator) }
    }

    /// The layout for `n` samples on `threads` threads, running `fusions` fused: their interior values get no
    /// memory. With `inputGradient`, the inputs get gradients (and R-derivatives) like the other values.
    private static func layout(model: Model, batch n: Int, threads: Int, fusions: [LayerFusion], inputGradient: Bool) -> Layout {
        var layout = Layout()
        layout.batch = n
        layout.threads = threads
        layout.fused = !fusions.isEmpty
        layout.fusions = fusions
        layout.fusionOfNode = [Int?](repeating: nil, count: model.nodes.count)
        for (f, fusion) in fusions.enumerated() { for l in fusion.nodes { layout.fusionOfNode[l] = f } }
        layout.inputGradient = inputGradient
        let inputs = model.inputShapes.count, values = model.shapes.count
        var sizes = model.shapes.map { n * $0.reduce(1, *) }
        for v in fusions.flatMap({ $0.interiorValues(of: model) }) { sizes[v] = 0 }
        // A fused run executes at its first node going forward and at its last going back: its output is
        // written, and its input's gradient, that much earlier.
        var forwardNode = Array(model.nodes.indices), backwardNode = forwardNode
        for fusion in fusions { for l in fusion.nodes { (forwardNode[l], backwardNode[l]) = (fusion.nodes.lowerBound, fusion.nodes.upperBound) } }
        var memory = model.nodes.indices.map {
            model.nodes[$0].step.memory(batch: n, inputs: model.nodes[$0].inputs.map { model.shapes[$0] }, threads: threads)
        }
        for fusion in fusions {
            guard let step = fusion.inputStep else { continue }
            let l = fusion.nodes.lowerBound
            memory[l] = step.memory(memory[l], batch: n, input: model.shapes[model.nodes[l].inputs[0]], threads: threads)
        }
        func allocate(_ total: inout Int, _ size: Int) -> Int { defer { total += size }; return total }
        var fixed = 0
        layout.saved = memory.map { allocate(&fixed, $0.saved) }
        layout.scratch = memory.map(\.scratch).max() ?? 0
        layout.probs = allocate(&fixed, sizes[model.output])
        layout.savedInts = memory.map { allocate(&layout.ints, $0.savedInts) }
        layout.rActivation = (0 ..< values).map { $0 < inputs ? -1 : allocate(&layout.rOperator, sizes[$0]) }
        layout.rSaved = memory.map { allocate(&layout.rOperator, $0.rSaved) }
        var readers = [[(node: Int, slot: Int)]](repeating: [], count: values)
        for (l, node) in model.nodes.enumerated() { for (slot, v) in node.inputs.enumerated() { readers[v].append((l, slot)) } }
        // The backward buffers, as intervals of the reverse sweep (node l runs at time N - 1 - l, the loss at
        // -1): a value's gradient from its last reader (or the loss) to its producer, each other reader's buffer
        // from that reader to the producer.
        let last = model.nodes.count - 1
        var intervals: [(start: Int, end: Int, size: Int)] = []
        var gradientInterval = [Int](repeating: -1, count: values)
        var edgeInterval = model.nodes.map { [Int](repeating: -1, count: $0.inputs.count) }
        var extraIntervals = [[Int]](repeating: [], count: values)
        for v in (inputGradient ? 0 : inputs) ..< values {
            let producer = v < inputs ? last + 1 : last - (v - inputs)   // an input's gradient: kept to the end
            let lastReader = v == model.output ? nil : readers[v].last
            gradientInterval[v] = intervals.count
            intervals.append((lastReader.map { last - backwardNode[$0.node] } ?? -1, producer, sizes[v]))
            for reader in readers[v] {
                if let lastReader, reader == lastReader {
                    edgeInterval[reader.node][reader.slot] = gradientInterval[v]
                } else {
                    edgeInterval[reader.node][reader.slot] = intervals.count
                    extraIntervals[v].append(intervals.count)
                    intervals.append((last - backwardNode[reader.node], producer, sizes[v]))
                }
            }
        }
        let tied = model.nodes.indices.filter { model.nodes[$0].owner != $0 }.map { model.parameterRange(ofLayer: model.nodes[$0].owner).count }
        let tiedSize = tied.max() ?? 0
        // The activations, on one timeline with the backward sweep: node l's forward at l, the loss at N, node
        // l's backward at 2N - l. A value lives from its producer (the inputs' copies: -1) to its last reader:
        // forward readers, a reader whose backward reads its inputs, its producer if the producer's backward
        // reads its output, the loss for the output.
        let count = model.nodes.count
        let stored = (0 ..< values).filter { !(inputs == 1 && $0 == 0) }
        let lifetimes = stored.map { v -> (start: Int, end: Int, size: Int) in
            var end = v == model.output ? count : -1
            if v >= inputs, model.nodes[v - inputs].step.backwardReads.contains(.output) { end = max(end, 2 * count - (v - inputs)) }
            for reader in readers[v] {
                end = max(end, reader.node)
                if model.nodes[reader.node].step.backwardReads.contains(.input) { end = max(end, 2 * count - reader.node) }
            }
            return (v < inputs ? -1 : forwardNode[v - inputs], end, sizes[v])
        }
        func gradients(_ offsets: [Int], size: Int, at base: Int = 0) -> GradientPlan {
            GradientPlan(size: size + tiedSize, gradient: gradientInterval.map { $0 < 0 ? -1 : base + offsets[$0] },
                         edge: edgeInterval.map { $0.map { $0 < 0 ? -1 : base + offsets[$0] } },
                         extra: extraIntervals.map { $0.map { base + offsets[$0] } }, tied: base + size)
        }
        func activations(_ offsets: [Int]) -> [Int] {
            var activation = [Int](repeating: 0, count: values)
            for (k, v) in stored.enumerated() { activation[v] = fixed + offsets[k] }
            return activation
        }
        // Kept: one buffer after the other. The R-derivatives of the gradients are laid out as the kept gradients.
        var size = 0, forward = 0
        let sequential = intervals.map { allocate(&size, $0.size) }, inOrder = lifetimes.map { allocate(&forward, $0.size) }
        layout.kept = PassPlan(forward: fixed + forward, activation: activations(inOrder), backward: gradients(sequential, size: size))
        layout.r = gradients(sequential, size: size, at: layout.rOperator)
        layout.rOperator += layout.r.size
        let sharedForward = sharedOffsets(lifetimes), shared = sharedOffsets(intervals)
        layout.transient = PassPlan(forward: fixed + sharedForward.size, activation: activations(sharedForward.offsets),
                                    backward: gradients(shared.offsets, size: shared.size))
        layout.plan = layout.kept
        return layout
    }

    /// Offsets for buffers live over the given inclusive intervals, sharing memory between those never live at
    /// once: each buffer, by start, at the lowest offset where it fits between the buffers still live.
    private static func sharedOffsets(_ intervals: [(start: Int, end: Int, size: Int)]) -> (offsets: [Int], size: Int) {
        var offsets = [Int](repeating: 0, count: intervals.count), size = 0
        var live: [(offset: Int, size: Int, end: Int)] = []
        for i in intervals.indices.sorted(by: { (intervals[$0].start, $0) < (intervals[$1].start, $1) }) {
            let interval = intervals[i]
            live.removeAll { $0.end < interval.start }
            live.sort { $0.offset < $1.offset }
            var offset = 0
            for block in live {
                if block.offset - offset >= interval.size { break }
                offset = max(offset, block.offset + block.size)
            }
            offsets[i] = offset
            live.append((offset, interval.size, interval.end))
            size = max(size, offset + interval.size)
        }
        return (offsets, size)
    }

    private func checkState() throws {
        guard state.count == model.stateLayout.count else {
            throw MetaCoreError.shape("workspace state has \(state.count) entries; the model has \(model.stateLayout.count) state values")
        }
    }

    /// Resizes an output vector to the parameter count (its contents are overwritten anyway).
    private func fit(_ vector: inout [Float]) {
        if vector.count != model.parameterCount { vector = [Float](repeating: 0, count: model.parameterCount) }
    }
}

/// The buffers one forward and backward pass fills, and the gradient it produced when it is held.
private struct PassBuffers {
    var forward = Arena<Float>(), backward = Arena<Float>(), ints = Arena<Int32>()
    var gradient: [Float] = []

    var bytes: Int {
        MemoryLayout<Float>.stride * (forward.capacity + backward.capacity + gradient.count)
            + MemoryLayout<Int32>.stride * ints.capacity
    }

    func free() { forward.free(); backward.free(); ints.free() }
}

/// A growable, uninitialised block of memory owned by a ``Workspace``.
///
/// Blocks of 2 MiB and more are aligned to 2 MiB and offered to the kernel as transparent huge pages
/// (`madvise`): a pass over a large `[N, C, H, W]` tensor touches thousands of 4 KiB pages, and batch-norm's
/// passes were bound by TLB misses on them.
private struct Arena<Element> {
    private static var hugePage: Int { 2 << 20 }
    private(set) var base = Arena.allocate(1)
    private(set) var capacity = 0

    mutating func reserve(_ count: Int) {
        guard count > capacity else { return }
        free()
        base = Self.allocate(count)
        capacity = count
    }

    func free() { Glibc.free(base) }

    /// `count` elements from malloc, or huge-page-aligned from aligned_alloc for 2 MiB and more.
    private static func allocate(_ count: Int) -> UnsafeMutablePointer<Element> {
        let bytes = count * MemoryLayout<Element>.stride, huge = bytes >= hugePage
        let size = huge ? (bytes + hugePage - 1) / hugePage * hugePage : bytes
        guard let memory = huge ? aligned_alloc(hugePage, size) : malloc(size) else {
            fatalError("out of memory: a workspace needs \(size >> 20) MiB")
        }
        if huge { _ = madvise(memory, size, MADV_HUGEPAGE) }
        return memory.bindMemory(to: Element.self, capacity: count)
    }
}
