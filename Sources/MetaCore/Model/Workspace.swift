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

    /// Buffers laid out for `batch` samples. Allocated lazily by need: a forward-only evaluation never pays
    /// for gradient or R-operator memory.
    private struct Layout {
        var batch = 0, threads = 1
        var forward = 0, backward = 0, rOperator = 0, ints = 0
        var activation: [Int] = [], saved: [Int] = [], probs = 0, scratch = 0
        var gradient: [Int] = []
        var rActivation: [Int] = [], rGradient: [Int] = [], rSaved: [Int] = []
        var savedInts: [Int] = []
    }

    /// Parameter-sized vectors the learners reuse between calls (an inner step's gradient, H·v), so that a
    /// workspace's steady-state meta-gradients do not allocate them afresh.
    var innerGradient: [Float] = [], hessianVector: [Float] = []

    /// A gradient pass kept for Hessian-vector products at the same point and batch (second-order MAML's
    /// inner steps): its buffers, its gradient, and what it was computed from. Never in `.training` mode,
    /// whose passes update the running statistics.
    private struct HeldPass {
        let parameters: [Float], batch: Batch, normalization: Normalization, state: [Float], threads: Int
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
    private var queryWorkspace: Workspace?

    private var layout = Layout()
    /// The buffers the passes run in; the R-passes' own buffers and the layers' scratch space are not kept
    /// with a held pass.
    private var live = PassBuffers(), rArena = Arena<Float>(), scratchArena = Arena<Float>()
    /// Stands in for buffers a pass does not use (never read or written).
    private let placeholder = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    public init(model: Model) {
        self.model = model
        self.state = model.initialState()
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
    /// ``threads`` and ``state`` (copied in, and the state copied back): the learners run their passes on a
    /// task's query set there, so that this workspace keeps its last pass on the support set for the
    /// Hessian-vector product at the same point. Its buffers are kept between calls like this workspace's.
    public func onQuerySet<T>(_ body: (Workspace) throws -> T) rethrows -> T {
        let other = queryWorkspace ?? Workspace(model: model)
        queryWorkspace = other
        other.normalization = normalization
        other.threads = threads
        other.state = state
        defer { state = other.state }
        return try body(other)
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

    /// `H v` alone (see ``hessianVectorProduct(at:on:direction:into:gradient:)``).
    @discardableResult
    public func hessianVectorProduct(at parameters: [Float], on batch: Batch, direction: [Float],
                                     into hv: inout [Float]) throws -> LossValue {
        var gradient: [Float] = []
        return try hessianVectorProduct(at: parameters, on: batch, direction: direction, into: &hv, gradient: &gradient)
    }

    /// The model's outputs `[N, ...output shape]` (logits for classification) for `inputs` `[N, ...]`.
    public func predict(at parameters: [Float], inputs: Tensor) throws -> Tensor {
        let n = try check(inputs: inputs, parameters: parameters)
        reserve(batch: n, stage: .forward)
        inputs.scalars.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                forwardLayers(batch: n, input: x.baseAddress!, theta: p.baseAddress ?? UnsafePointer(placeholder))
            }
        }
        let count = n * model.outputShape.reduce(1, *)
        let output = Array(UnsafeBufferPointer(start: live.forward.base + layout.activation[model.layers.count], count: count))
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
        reserve(batch: n, stage: gradient == nil ? .forward : .backward)
        let count = n * model.outputShape.reduce(1, *), last = model.layers.count
        return try parameters.withUnsafeBufferPointer { p in
            try inputs.scalars.withUnsafeBufferPointer { x in
                let theta = p.baseAddress ?? UnsafePointer(placeholder)
                forwardLayers(batch: n, input: x.baseAddress!, theta: theta)
                let outputs = UnsafeBufferPointer(start: live.forward.base + layout.activation[last], count: count)
                guard let gradient else { return try loss(outputs, nil) }
                let value = try loss(outputs, UnsafeMutableBufferPointer(start: live.backward.base + layout.gradient[last], count: count))
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
        let n = batch.count, threads = max(1, self.threads)
        // A Hessian-vector product at the point of a held pass starts from it: its buffers are swapped in for
        // the R-passes, which read them and change neither, and swapped back out.
        let reuse = stage == .rOperator ? held.lastIndex {
            $0.parameters == parameters && $0.batch == batch && $0.normalization == normalization && $0.state == state
                && $0.threads == threads
        } : nil
        if let reuse { swap(&live, &held[reuse].buffers) }
        defer { if let reuse { swap(&live, &held[reuse].buffers) } }
        reserve(batch: n, stage: stage)

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
                    return value
                }
            }
        }
        if reuse == nil, heldPasses > 0, stage >= .backward, let gradient, !isTraining {
            hold(parameters: parameters, batch: batch, threads: threads, value: value, gradient: gradient)
        }
        return value
    }

    /// Keeps the pass just run (the live buffers, with a copy of its gradient). The next pass runs in the
    /// buffers of the oldest held pass if keeping it goes beyond ``heldPasses`` or ``heldPassBytes``, in new
    /// buffers otherwise.
    private func hold(parameters: [Float], batch: Batch, threads: Int, value: LossValue, gradient: UnsafeMutablePointer<Float>) {
        if live.gradient.count != model.parameterCount { live.gradient = [Float](repeating: 0, count: model.parameterCount) }
        guard live.bytes <= heldPassBytes else { return }
        live.gradient.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: gradient, count: $0.count) }
        held.append(HeldPass(parameters: parameters, batch: batch, normalization: normalization, state: state,
                             threads: threads, value: value, buffers: live))
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

    /// The loss of the last activation against the batch's targets; with `gradient`, also dL/dz.
    private func lossForward(_ batch: Batch, gradient: Bool) -> LossValue {
        let n = batch.count, last = model.layers.count, outputs = n * model.outputShape.reduce(1, *)
        let z = live.forward.base + layout.activation[last], probs = live.forward.base + layout.probs
        let dz = live.backward.base + layout.gradient[last]
        switch batch.targets {
        case .labels(let labels):
            return labels.withUnsafeBufferPointer { t in
                var correct: Int32 = 0
                let loss = mc_softmax_xent_forward(Int32(n), Int32(outputs / n), z, t.baseAddress, probs, &correct)
                if gradient { mc_softmax_xent_backward(Int32(n), Int32(outputs / n), probs, t.baseAddress, dz) }
                return LossValue(loss: loss, correct: Int(correct), count: n)
            }
        case .values(let targets):
            return targets.scalars.withUnsafeBufferPointer { t in
                let loss = mc_mse_forward(outputs, z, t.baseAddress)
                if gradient { mc_mse_backward(outputs, z, t.baseAddress, dz) }
                return LossValue(loss: loss, correct: nil, count: n)
            }
        }
    }

    /// The R-derivative of dL/dz: the loss's Hessian with respect to its input applied to Rz.
    private func lossRBackward(_ batch: Batch) {
        let n = batch.count, last = model.layers.count, outputs = n * model.outputShape.reduce(1, *)
        let Rz = rArena.base + layout.rActivation[last], Rdz = rArena.base + layout.rGradient[last]
        switch batch.targets {
        case .labels:
            mc_softmax_xent_rbackward(Int32(n), Int32(outputs / n), live.forward.base + layout.probs, Rz, Rdz)
        case .values:
            mc_mse_rbackward(outputs, Rz, Rdz)
        }
    }

    private func forwardLayers(batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>) {
        sweep(.forward, batch: n, input: input, theta: theta, v: nil, gradient: nil, hv: nil)
    }

    private enum Direction { case forward, backward, rForward, rBackward }

    /// One pass of every layer, in order (forward, R-forward) or in reverse (backward, R-backward).
    private func sweep(_ direction: Direction, batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>,
                       v: UnsafePointer<Float>?, gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?) {
        // Split passes call BLAS from several threads at once: single-threaded BLAS keeps them deterministic.
        if layout.threads > 1 && BLAS.threads != 1 { BLAS.threads = 1 }
        state.withUnsafeMutableBufferPointer { s in
            let reverse = direction == .backward || direction == .rBackward, last = model.layers.count - 1
            for step in 0 ... last {
                let l = reverse ? last - step : step
                let p = pass(l, batch: n, input: input, theta: theta, state: s.baseAddress, v: v, gradient: gradient, hv: hv)
                switch direction {
                case .forward: model.layers[l].forward(p)
                case .backward: model.layers[l].backward(p)
                case .rForward: model.layers[l].rForward(p)
                case .rBackward: model.layers[l].rBackward(p)
                }
            }
        }
    }

    /// The buffers of layer `l` for a batch of `n`.
    private func pass(_ l: Int, batch n: Int, input: UnsafePointer<Float>, theta: UnsafePointer<Float>,
                      state: UnsafeMutablePointer<Float>?, v: UnsafePointer<Float>?,
                      gradient: UnsafeMutablePointer<Float>?, hv: UnsafeMutablePointer<Float>?) -> LayerPass {
        let offset = model.parameterRange(ofLayer: l).lowerBound
        let stateOffset = model.stateRange(ofLayer: l).lowerBound
        let f = live.forward.base, b = live.backward.base, r = rArena.base
        let hasBackward = live.backward.capacity > 0, hasR = rArena.capacity > 0
        return LayerPass(
            batch: n, inputShape: model.shapes[l], outputShape: model.shapes[l + 1], normalization: normalization,
            threads: layout.threads,
            x: l == 0 ? input : UnsafePointer(f + layout.activation[l]), y: f + layout.activation[l + 1],
            theta: theta + offset, state: (state ?? placeholder) + stateOffset,
            saved: f + layout.saved[l], savedInts: live.ints.base + layout.savedInts[l],
            rSaved: hasR ? r + layout.rSaved[l] : placeholder, scratch: scratchArena.base,
            dy: hasBackward ? UnsafePointer(b + layout.gradient[l + 1]) : UnsafePointer(placeholder),
            dx: hasBackward && l > 0 ? b + layout.gradient[l] : nil,
            gradient: gradient.map { $0 + offset } ?? placeholder,
            v: v.map { $0 + offset } ?? UnsafePointer(placeholder),
            Rx: hasR && l > 0 ? UnsafePointer(r + layout.rActivation[l]) : nil,
            Ry: hasR ? r + layout.rActivation[l + 1] : placeholder,
            Rdy: hasR ? UnsafePointer(r + layout.rGradient[l + 1]) : UnsafePointer(placeholder),
            Rdx: hasR && l > 0 ? r + layout.rGradient[l] : nil,
            hv: hv.map { $0 + offset } ?? placeholder)
    }

    // MARK: - Memory

    /// Lays the buffers out for `n` samples and makes sure the arenas `stage` needs are large enough.
    private func reserve(batch n: Int, stage: Stage) {
        let threads = max(1, self.threads)
        if layout.batch != n || layout.threads != threads { layout = Self.layout(model: model, batch: n, threads: threads) }
        live.forward.reserve(layout.forward)
        live.ints.reserve(layout.ints)
        scratchArena.reserve(layout.scratch)
        if stage >= .backward { live.backward.reserve(layout.backward) }
        if stage >= .rOperator { rArena.reserve(layout.rOperator) }
    }

    private static func layout(model: Model, batch n: Int, threads: Int) -> Layout {
        var layout = Layout()
        layout.batch = n
        layout.threads = threads
        let layers = model.layers.count
        let sizes = model.shapes.map { n * $0.reduce(1, *) }
        let memory = model.layers.indices.map { model.layers[$0].memory(batch: n, input: model.shapes[$0], threads: threads) }
        // Activation 0 is the caller's input, read in place: offsets for 1 ... layers.
        layout.activation = [0] + sizes.dropFirst().map { size in defer { layout.forward += size }; return layout.forward }
        layout.saved = memory.map { m in defer { layout.forward += m.saved }; return layout.forward }
        layout.scratch = memory.map(\.scratch).max() ?? 0
        layout.probs = layout.forward
        layout.forward += sizes[layers]
        layout.savedInts = memory.map { m in defer { layout.ints += m.savedInts }; return layout.ints }
        layout.gradient = [0] + sizes.dropFirst().map { size in defer { layout.backward += size }; return layout.backward }
        layout.rActivation = [0] + sizes.dropFirst().map { size in defer { layout.rOperator += size }; return layout.rOperator }
        layout.rGradient = [0] + sizes.dropFirst().map { size in defer { layout.rOperator += size }; return layout.rOperator }
        layout.rSaved = memory.map { m in defer { layout.rOperator += m.rSaved }; return layout.rOperator }
        return layout
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
