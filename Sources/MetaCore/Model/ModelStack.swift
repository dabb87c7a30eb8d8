/// A layer whose samples do not interact and that has no parameters or state: a pass over a batch is the
/// passes over its samples, value for value (activations, reshapes). A model stacked across tasks
/// (``ModelStack``) runs such a layer once over every task's samples.
public protocol PerSampleLayer: Layer {}

extension ReLU: PerSampleLayer {}
extension LeakyReLU: PerSampleLayer {}
extension Tanh: PerSampleLayer {}
extension Sigmoid: PerSampleLayer {}
extension Flatten: PerSampleLayer {}

/// A model run on several tasks at once — what JAX's `vmap` does for a meta-batch: ``stacked`` is `groups`
/// copies of ``base`` side by side, each with parameters of its own, on a batch of `groups` equal blocks of
/// samples (one task's each), and its loss is the sum of the blocks' losses (``Model/groups``). Its gradient
/// and Hessian-vector products are then the tasks' own, side by side: the passes of a meta-batch of small
/// tasks pay the per-pass overhead once instead of once per task.
///
/// Every group computes with the very calls the base model makes on its own, so each task's results are
/// the same to the bit (``MetaTrainer`` stacks the tasks it runs on one thread; ``TaskRunner/stacksTasks``).
///
/// A model can be stacked if it is a chain of ``Linear`` layers and ``PerSampleLayer``s (an MLP).
public struct ModelStack: Sendable {
    public let base: Model, stacked: Model
    public let groups: Int
    /// For each of the base model's layers with parameters: their range in the base model's vector and in the
    /// stacked one, whose range holds the `groups` copies one after the other.
    private let ranges: [(one: Range<Int>, all: Range<Int>)]

    /// The stack of `groups` copies of `base`; `nil` if `base` is not a chain of ``Linear`` layers and
    /// ``PerSampleLayer``s, or is stacked already.
    public init?(_ base: Model, groups: Int) {
        guard groups >= 1, base.groups == 1, base.inputShapes.count == 1,
              base.nodes.indices.allSatisfy({ base.nodes[$0].inputs == [$0] && base.nodes[$0].owner == $0 }) else { return nil }
        var layers: [any Layer] = []
        for node in base.nodes {
            guard let layer = node.layer else { return nil }
            switch layer {
            case let linear as Linear: guard let grouped = try? GroupedLinear(groups: groups, linear) else { return nil }; layers.append(grouped)
            case let layer as any PerSampleLayer: layers.append(layer)
            default: return nil
            }
        }
        guard var stacked = try? Model(inputShape: base.inputShape, layers: layers) else { return nil }
        stacked.groups = groups
        self.base = base; self.stacked = stacked; self.groups = groups
        ranges = base.nodes.indices.compactMap { l in
            let range = base.parameterRange(ofLayer: l)
            return range.isEmpty ? nil : (one: range, all: stacked.parameterRange(ofLayer: l))
        }
        // stack(_:into:) writes a new vector through these ranges alone.
        precondition(ranges.reduce(0) { $0 + $1.all.count } == stacked.parameterCount, "the layers' ranges do not cover the stacked parameters")
    }

    /// The stacked model's parameters with every group at `parameters` (the base model's), written into
    /// `stacked` — a new vector: the last one is usually still held (by a workspace's held pass), and refilling
    /// it in place would first copy it.
    public func stack(_ parameters: [Float], into stacked: inout [Float]) {
        precondition(parameters.count == base.parameterCount, "\(parameters.count) parameters for a model of \(base.parameterCount)")
        let count = self.stacked.parameterCount
        stacked = parameters.withUnsafeBufferPointer { p in
            [Float](unsafeUninitializedCapacity: count) { s, initialized in
                for (one, all) in ranges {
                    for t in 0 ..< groups { (s.baseAddress! + all.lowerBound + t * one.count).initialize(from: p.baseAddress! + one.lowerBound, count: one.count) }
                }
                initialized = count
            }
        }
    }

    /// Group `group`'s part of a stacked vector (parameters, a gradient), as a vector of the base model,
    /// written to `output` (`base.parameterCount` floats).
    public func unstack(_ stacked: [Float], group: Int, into output: UnsafeMutablePointer<Float>) {
        precondition(stacked.count == self.stacked.parameterCount && (0 ..< groups).contains(group))
        stacked.withUnsafeBufferPointer { s in
            for (one, all) in ranges {
                (output + one.lowerBound).update(from: s.baseAddress! + all.lowerBound + group * one.count, count: one.count)
            }
        }
    }

    /// Adds group `group`'s part of a stacked vector to `output`, a vector of the base model.
    public func add(_ stacked: [Float], group: Int, into output: UnsafeMutablePointer<Float>) {
        precondition(stacked.count == self.stacked.parameterCount && (0 ..< groups).contains(group))
        stacked.withUnsafeBufferPointer { s in
            for (one, all) in ranges {
                let source = s.baseAddress! + all.lowerBound + group * one.count, target = output + one.lowerBound
                for i in 0 ..< one.count { target[i] += source[i] }
            }
        }
    }

    /// `tasks` (one per group) as one task of the stacked model: their support sets one after the other, and
    /// their query sets. `nil` unless there are ``groups`` of them and all support sets have one size, all
    /// query sets another, and all targets one kind.
    public func stack(_ tasks: [Task]) throws -> Task? {
        try tasks.withUnsafeBufferPointer { tasks in
            guard tasks.count == groups, let support = try Batch.joined(tasks, query: false),
                  let query = try Batch.joined(tasks, query: true) else { return nil }
            return Task(support: support, query: query)
        }
    }
}

extension Batch {
    /// The support (or query) batches of `tasks` one after the other, if they all have the same number of samples,
    /// per-sample shape, kind of target and target shape; `nil` otherwise. Each batch is borrowed in place and its
    /// storage copied straight into the joined arrays: a meta-batch of small tasks joins two dozen per step, and
    /// copies of the batches (their reference counts) cost more than the copying.
    static func joined(_ tasks: UnsafeBufferPointer<Task>, query: Bool) throws -> Batch? {
        func side<R>(_ t: Int, _ body: (borrowing Batch) throws -> R) rethrows -> R {
            query ? try body(tasks[t].query) : try body(tasks[t].support)
        }
        guard !tasks.isEmpty else { return nil }
        let (shape, targetShape, labels) = side(0) { first -> ([Int], [Int], Bool) in
            switch first.targets {
            case .labels(let l): return (first.inputs.shape, [l.count], true)
            case .values(let v): return (first.inputs.shape, v.shape, false)
            }
        }
        let parts = tasks.count, size = shape.reduce(1, *), targetSize = targetShape.reduce(1, *)
        var inputs = [Float](repeating: 0, count: size * parts)
        var labelValues = [Int32](repeating: 0, count: labels ? targetSize * parts : 0)
        var values = [Float](repeating: 0, count: labels ? 0 : targetSize * parts)
        for t in 0 ..< parts {
            let fits = side(t) { batch -> Bool in
                guard batch.inputs.shape == shape else { return false }
                inputs.withUnsafeMutableBufferPointer { all in
                    batch.inputs.scalars.withUnsafeBufferPointer { (all.baseAddress! + t * size).update(from: $0.baseAddress!, count: size) }
                }
                switch batch.targets {
                case .labels(let l) where labels:
                    labelValues.withUnsafeMutableBufferPointer { all in
                        l.withUnsafeBufferPointer { (all.baseAddress! + t * targetSize).update(from: $0.baseAddress!, count: targetSize) }
                    }
                case .values(let v) where !labels && v.shape == targetShape:
                    values.withUnsafeMutableBufferPointer { all in
                        v.scalars.withUnsafeBufferPointer { (all.baseAddress! + t * targetSize).update(from: $0.baseAddress!, count: targetSize) }
                    }
                default: return false
                }
                return true
            }
            guard fits else { return nil }
        }
        let joinedShape = [shape[0] * parts] + shape.dropFirst()
        if labels { return try Batch(inputs: Tensor(shape: joinedShape, scalars: inputs), labels: labelValues) }
        return try Batch(inputs: Tensor(shape: joinedShape, scalars: inputs),
                         values: Tensor(shape: [targetShape[0] * parts] + targetShape.dropFirst(), scalars: values))
    }
}
