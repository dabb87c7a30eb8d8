import Testing
@testable import MetaCore

/// A Hessian-vector product at the point and batch of one of the workspace's held gradient passes starts from
/// that pass instead of recomputing it (second-order MAML's inner steps): its results must be exactly a fresh
/// workspace's, anything that changes the pass — the point, the batch, the state — must make it recompute,
/// and passes beyond ``Workspace/heldPasses`` are evicted, oldest first.
@Suite("Held passes")
struct HeldPassTests {
    static func model() throws -> Model {
        try Model(inputShape: [2, 6, 6], layers: [Conv2d(2, 4, kernel: 3, padding: 1), BatchNorm(4), ReLU(), MaxPool(2),
                                                  Flatten(), Linear(36, 3)])
    }

    struct Product: Equatable { let hv: [Float], gradient: [Float], loss: Double }

    /// H·v computed from scratch.
    static func fresh(_ model: Model, _ theta: [Float], _ batch: Batch, _ v: [Float],
                      normalization: Normalization = .transductive, state: [Float]? = nil) throws -> Product {
        let workspace = Workspace(model: model)
        workspace.normalization = normalization
        if let state { workspace.state = state }
        return try product(workspace, theta, batch, v)
    }

    static func product(_ workspace: Workspace, _ theta: [Float], _ batch: Batch, _ v: [Float]) throws -> Product {
        var hv: [Float] = [], gradient: [Float] = []
        let value = try workspace.hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv, gradient: &gradient)
        return Product(hv: hv, gradient: gradient, loss: value.loss)
    }

    @Test func onlyTheSamePointIsReused() throws {
        let model = try Self.model()
        var random = RandomSource(seed: 5)
        let batch = random.batch(for: model, count: 6, classification: true)
        let other = random.batch(for: model, count: 6, classification: true)
        let theta = model.initialParameters(seed: 1), moved = theta.map { $0 * 1.01 }
        let v = random.normals(model.parameterCount), u = random.normals(model.parameterCount)
        let workspace = Workspace(model: model)
        var gradient: [Float] = []

        // Passes are held only for learners that ask: buffers and a copy of the gradient each.
        try workspace.gradient(at: theta, on: batch, into: &gradient)
        #expect(try Self.product(workspace, theta, batch, v) == Self.fresh(model, theta, batch, v))
        #expect(workspace.reusedPasses == 0)
        workspace.heldPasses = 1

        try workspace.gradient(at: theta, on: batch, into: &gradient)
        #expect(try Self.product(workspace, theta, batch, v) == Self.fresh(model, theta, batch, v))
        #expect(workspace.reusedPasses == 1)
        // The R-passes leave the held pass as it was: a second direction reuses it too.
        #expect(try Self.product(workspace, theta, batch, u) == Self.fresh(model, theta, batch, u))
        #expect(workspace.reusedPasses == 2)

        try workspace.gradient(at: theta, on: batch, into: &gradient)
        #expect(try Self.product(workspace, moved, batch, v) == Self.fresh(model, moved, batch, v), "another point")
        try workspace.gradient(at: theta, on: batch, into: &gradient)
        #expect(try Self.product(workspace, theta, other, v) == Self.fresh(model, theta, other, v), "another batch")
        #expect(workspace.reusedPasses == 2)
        // Other passes run in other buffers: the held one survives them.
        try workspace.gradient(at: theta, on: batch, into: &gradient)
        _ = try workspace.loss(at: theta, on: other)
        _ = try workspace.predict(at: moved, inputs: other.inputs)
        #expect(try Self.product(workspace, theta, batch, v) == Self.fresh(model, theta, batch, v), "passes in between")
        #expect(workspace.reusedPasses == 3)

        // Running statistics read in inference mode: changing them changes the pass.
        workspace.normalization = .inference
        try workspace.gradient(at: theta, on: batch, into: &gradient)
        workspace.state[0] += 0.5
        workspace.state[4] *= 2
        #expect(try Self.product(workspace, theta, batch, v)
                == Self.fresh(model, theta, batch, v, normalization: .inference, state: workspace.state))
        #expect(workspace.reusedPasses == 3)
        // Training mode updates the running statistics on every pass: never held.
        workspace.normalization = .training(momentum: 0.1)
        try workspace.gradient(at: theta, on: batch, into: &gradient)
        _ = try Self.product(workspace, theta, batch, v)
        #expect(workspace.reusedPasses == 3)
    }

    /// With room for three, the last three of four gradient passes are reused in any order and more than once
    /// (a product leaves the pass it started from as it was), the first is recomputed, and lowering the limit
    /// or the memory budget drops them.
    @Test func theLatestPassesAreHeld() throws {
        let model = try Self.model()
        var random = RandomSource(seed: 6)
        let batch = random.batch(for: model, count: 5, classification: true)
        let theta = model.initialParameters(seed: 2), v = random.normals(model.parameterCount)
        let points = (0 ..< 4).map { k in theta.map { $0 * (1 + 0.01 * Float(k)) } }
        let workspace = Workspace(model: model)
        workspace.heldPasses = 3
        var gradient: [Float] = []
        for point in points { try workspace.gradient(at: point, on: batch, into: &gradient) }
        for k in [2, 3, 1, 2, 3] {
            #expect(try Self.product(workspace, points[k], batch, v) == Self.fresh(model, points[k], batch, v))
        }
        #expect(workspace.reusedPasses == 5)
        #expect(try Self.product(workspace, points[0], batch, v) == Self.fresh(model, points[0], batch, v))
        #expect(workspace.reusedPasses == 5, "the oldest pass was evicted")
        workspace.heldPasses = 0
        #expect(try Self.product(workspace, points[3], batch, v) == Self.fresh(model, points[3], batch, v))
        #expect(workspace.reusedPasses == 5, "no pass is held any more")
        // A memory budget below one pass holds none.
        workspace.heldPasses = 3
        workspace.heldPassBytes = 1000
        try workspace.gradient(at: points[1], on: batch, into: &gradient)
        #expect(try Self.product(workspace, points[1], batch, v) == Self.fresh(model, points[1], batch, v))
        #expect(workspace.reusedPasses == 5, "over the memory budget")
        workspace.heldPassBytes = 256 << 20
        try workspace.gradient(at: points[1], on: batch, into: &gradient)
        #expect(try Self.product(workspace, points[1], batch, v) == Self.fresh(model, points[1], batch, v))
        #expect(workspace.reusedPasses == 6)
    }

    /// The learners run their query passes on the query set's workspace, so every H·v of second-order MAML
    /// (one per inner step) starts from that step's held pass; the meta-gradient is exactly the one computed
    /// without them, and the query workspace hands its running statistics back.
    @Test func mamlReusesEveryInnerStep() throws {
        let model = try Self.model()
        let tasks = try SyntheticImageTasks(ways: 3, shots: 2, queries: 2, inputShape: [2, 6, 6])
        var random = RandomSource(seed: 9)
        let task = try tasks.sample(&random)
        let meta = model.initialParameters(seed: 4)
        for steps in [1, 3] {
            let maml = MAML(inner: try InnerLoop(steps: steps, learningRate: 0.1))
            let workspace = Workspace(model: model)
            var gradient: [Float] = []
            _ = try maml.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
            #expect(workspace.reusedPasses == steps, "\(steps) inner steps: every step's pass is held")

            // The same chain of products by hand, each from scratch.
            var theta = [meta]
            for _ in 0 ..< steps {
                var g: [Float] = []
                try Workspace(model: model).gradient(at: theta.last!, on: task.support, into: &g)
                var next = theta.last!
                next.add(g, scaledBy: -0.1)
                theta.append(next)
            }
            var expected: [Float] = []
            try Workspace(model: model).gradient(at: theta[steps], on: task.query, into: &expected)
            for k in stride(from: steps - 1, through: 0, by: -1) {
                let hv = try Self.fresh(model, theta[k], task.support, expected).hv
                expected.add(hv, scaledBy: -0.1)
            }
            #expect(gradient == expected)
        }

        let workspace = Workspace(model: model)
        workspace.normalization = .training(momentum: 0.5)
        let before = workspace.state
        var g: [Float] = []
        _ = try workspace.onQuerySet { try $0.gradient(at: meta, on: task.query, into: &g) }
        #expect(workspace.state != before, "the query workspace's running statistics come back")
    }
}
