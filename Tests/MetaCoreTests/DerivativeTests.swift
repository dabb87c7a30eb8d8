import Testing
@testable import MetaCore

/// A model and batch on which to check the analytic gradient and Hessian-vector product against finite
/// differences.
struct DerivativeCase: CustomTestStringConvertible, Sendable {
    let name: String
    let make: @Sendable () throws -> Model
    var batch = 6
    var classification = true
    var normalization: Normalization = .transductive
    /// Finite-difference step along a unit-variance direction.
    var step = 1e-3
    var testDescription: String { name }

    /// No ReLU, LeakyReLU or max-pooling: the loss is smooth, so float finite differences of gradients are meaningful.
    func isSmooth() throws -> Bool { try make().layers.allSatisfy { !($0 is ReLU) && !($0 is LeakyReLU) && !($0 is MaxPool) } }
}

/// Every layer type alone (parameter-free ones between two parametrised layers, so that their input
/// gradient and R-forms are exercised), BatchNorm in each mode, and the two standard networks whole.
let derivativeCases = layerDerivativeCases + graphDerivativeCases

let layerDerivativeCases: [DerivativeCase] = [
    DerivativeCase(name: "Linear alone", make: { try Model(inputShape: [5], layers: [Linear(5, 3)]) }),
    DerivativeCase(name: "Linear alone, MSE", make: { try Model(inputShape: [5], layers: [Linear(5, 2)]) },
                   classification: false),
    DerivativeCase(name: "Conv2d alone, stride 1 pad 0", make: {
        try Model(inputShape: [2, 5, 5], layers: [Conv2d(2, 3, kernel: 3), Flatten()])
    }, classification: false),
    DerivativeCase(name: "Conv2d alone, stride 2 pad 1", make: {
        try Model(inputShape: [2, 6, 7], layers: [Conv2d(2, 3, kernel: 3, stride: 2, padding: 1)])
    }, classification: false),
    DerivativeCase(name: "Conv2d alone, 3x3 stride 1 pad 1 (Winograd), odd size", make: {
        try Model(inputShape: [4, 5, 7], layers: [Conv2d(4, 3, kernel: 3, padding: 1), Flatten()])
    }, classification: false),
    DerivativeCase(name: "Conv2d feeding Conv2d", make: {
        try Model(inputShape: [1, 6, 6], layers: [Conv2d(1, 2, kernel: 3, padding: 1), Tanh(), Conv2d(2, 2, kernel: 2, stride: 2)])
    }, classification: false),
    DerivativeCase(name: "BatchNorm alone, features", make: { try Model(inputShape: [4], layers: [BatchNorm(4)]) }),
    DerivativeCase(name: "BatchNorm alone, images", make: { try Model(inputShape: [3, 3, 3], layers: [BatchNorm(3)]) },
                   classification: false),
    DerivativeCase(name: "BatchNorm between layers, transductive", make: {
        try Model(inputShape: [4], layers: [Linear(4, 5), BatchNorm(5), Tanh(), Linear(5, 3)])
    }),
    DerivativeCase(name: "BatchNorm between layers, training mode", make: {
        try Model(inputShape: [4], layers: [Linear(4, 5), BatchNorm(5), Tanh(), Linear(5, 3)])
    }, normalization: .training(momentum: 0.1)),
    DerivativeCase(name: "BatchNorm between layers, inference mode", make: {
        try Model(inputShape: [4], layers: [Linear(4, 5), BatchNorm(5), Tanh(), Linear(5, 3)])
    }, normalization: .inference),
    DerivativeCase(name: "BatchNorm without a scale between layers, transductive", make: {
        try Model(inputShape: [4], layers: [Linear(4, 5), BatchNorm(5, learnsScale: false), Tanh(), Linear(5, 3)])
    }),
    DerivativeCase(name: "BatchNorm without a scale between layers, inference mode", make: {
        try Model(inputShape: [4], layers: [Linear(4, 5), BatchNorm(5, learnsScale: false), Tanh(), Linear(5, 3)])
    }, normalization: .inference),
    DerivativeCase(name: "BatchNorm on images after Conv2d", make: {
        try Model(inputShape: [2, 4, 4], layers: [Conv2d(2, 3, kernel: 3, padding: 1), BatchNorm(3), Tanh(), Flatten(), Linear(48, 4)])
    }),
    DerivativeCase(name: "ReLU between layers", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), ReLU(), Linear(6, 3)])
    }),
    DerivativeCase(name: "LeakyReLU between layers", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), LeakyReLU(slope: 0.1), Linear(6, 3)])
    }),
    DerivativeCase(name: "Sigmoid between layers", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), Sigmoid(), Linear(6, 3)])
    }),
    DerivativeCase(name: "MLP stacked across 3 tasks (GroupedLinear, per-group loss)", make: {
        ModelStack(try Model(inputShape: [4], layers: [Linear(4, 5), Tanh(), Linear(5, 3)]), groups: 3)!.stacked
    }),
    DerivativeCase(name: "MLP stacked across 2 tasks, MSE", make: {
        ModelStack(try Model.mlp([3, 5, 2], activation: .sigmoid), groups: 2)!.stacked
    }, classification: false),
    DerivativeCase(name: "Conv-4 of LeakyReLU blocks, batch-norm", make: {
        try Model.conv4(classes: 3, inputShape: [1, 8, 8], channels: 3, blocks: 2, activation: .leakyRelu)
    }),
    DerivativeCase(name: "Softmax between layers", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), Softmax(), Linear(6, 3)])
    }),
    DerivativeCase(name: "L2Normalize between layers (cosine features)", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), L2Normalize(), Linear(6, 3)])
    }),
    DerivativeCase(name: "L2Normalize of the input", make: {
        try Model(inputShape: [4], layers: [L2Normalize(), Linear(4, 3)])
    }),
    DerivativeCase(name: "GlobalPool mean and sum after convolutions", make: {
        try Model(inputShape: [2, 5, 6], layers: [Conv2d(2, 3, kernel: 3, padding: 1), Tanh(), GlobalPool(.mean),
                                                  Linear(3, 4), Tanh(), Flatten(), Linear(4, 3)])
    }),
    DerivativeCase(name: "GlobalPool sum", make: {
        try Model(inputShape: [2, 3, 3], layers: [Conv2d(2, 3, kernel: 3, padding: 1), BatchNorm(3), Tanh(), GlobalPool(.sum), Linear(3, 3)])
    }),
    DerivativeCase(name: "Tanh between layers", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), Tanh(), Linear(6, 3)])
    }),
    DerivativeCase(name: "MaxPool and Flatten between layers", make: {
        try Model(inputShape: [1, 6, 6], layers: [Conv2d(1, 2, kernel: 3, padding: 1), MaxPool(2), Flatten(), Linear(18, 3)])
    }),
    DerivativeCase(name: "BatchNorm, ReLU, MaxPool (run fused), 7x7: a row and column no window covers", make: {
        try Model(inputShape: [2, 7, 7], layers: [Conv2d(2, 3, kernel: 3, padding: 1), BatchNorm(3), ReLU(), MaxPool(2),
                                                  Flatten(), Linear(27, 3)])
    }),
    DerivativeCase(name: "BatchNorm without a scale, ReLU, MaxPool (run fused), 7x7", make: {
        try Model(inputShape: [2, 7, 7], layers: [Conv2d(2, 3, kernel: 3, padding: 1), BatchNorm(3, learnsScale: false), ReLU(),
                                                  MaxPool(2), Flatten(), Linear(27, 3)])
    }),
    DerivativeCase(name: "MLP 1-40-40-1 (ReLU), MSE", make: { try Model.mlp([1, 40, 40, 1]) },
                   batch: 10, classification: false),
    DerivativeCase(name: "MLP 1-40-40-1 (tanh), MSE", make: { try Model.mlp([1, 40, 40, 1], activation: .tanh) },
                   batch: 10, classification: false),
    DerivativeCase(name: "Conv-4 with BatchNorm, 28x28, 4 blocks, 4 channels, 5-way", make: {
        try Model.conv4(classes: 5, channels: 4)
    }, batch: 10),
    DerivativeCase(name: "strided convolutions and a hidden layer (OML's network, small), tanh", make: {
        try Model.stridedConv(classes: 3, inputShape: [1, 9, 9], channels: 3, strides: [2, 1], hidden: [5], activation: .tanh)
    }),
    DerivativeCase(name: "Conv-4 with BatchNorm, 12x12, 8 channels, 3 blocks", make: {
        try Model.conv4(classes: 4, inputShape: [2, 12, 12], channels: 8, blocks: 3)
    }, batch: 8),
]

/// Parameters away from the initialisation's special values (BatchNorm's γ = 1, β = 0), so that every term
/// of every derivative is exercised.
func generalParameters(_ model: Model, seed: UInt64) -> [Float] {
    var random = RandomSource(seed: seed ^ 0xABCD)
    return zip(model.initialParameters(seed: seed), random.normals(model.parameterCount, scale: 0.1)).map(+)
}

func workspace(for c: DerivativeCase, model: Model, random: inout RandomSource) -> Workspace {
    let workspace = Workspace(model: model)
    workspace.normalization = c.normalization
    if c.normalization == .inference {
        // Running statistics somewhere plausible but not at their initial values.
        workspace.state = model.stateLayout.entries.flatMap { entry in
            (0 ..< entry.count).map { _ in entry.name.hasSuffix("var") ? 0.5 + random.uniform() : random.normal() * 0.3 }
        }
    }
    return workspace
}

/// Everything one case needs: model, parameters, batch, a workspace, and the double-precision reference.
struct DerivativeFixture {
    let model: Model, theta: [Float], batch: Batch, workspace: Workspace, reference: ReferenceModel
    var random: RandomSource

    init(_ c: DerivativeCase, seed: UInt64) throws {
        model = try c.make()
        random = RandomSource(seed: seed)
        theta = generalParameters(model, seed: seed)
        batch = random.batch(for: model, count: c.batch, classification: c.classification)
        workspace = MetaCoreTests.workspace(for: c, model: model, random: &random)
        reference = ReferenceModel(model, normalization: c.normalization, state: workspace.state)
    }

    /// Random directions: one over every parameter, then one confined to each parameter tensor in turn, so
    /// that an error in a small tensor cannot hide in a large one's norm.
    mutating func directions() -> [(name: String, u: [Float])] {
        var result = [("all parameters", random.normals(model.parameterCount))]
        for entry in model.layout.entries {
            var u = [Float](repeating: 0, count: model.parameterCount)
            for i in entry.range { u[i] = random.normal() }
            result.append((entry.name, u))
        }
        return result
    }

    func gradient(at p: [Float]) throws -> [Float] {
        var g: [Float] = []
        try workspace.gradient(at: p, on: batch, into: &g)
        return g
    }
}

@Suite("Gradients and Hessian-vector products")
struct DerivativeTests {
    /// The analytic gradient and H·v against the exact double-precision hyper-dual reference, on every case
    /// (ReLU and max-pooling included: the reference follows the same branch, so kinks do not matter).
    @Test(arguments: derivativeCases)
    func exactAgainstDoublePrecisionReference(_ c: DerivativeCase) throws {
        var f = try DerivativeFixture(c, seed: 21)
        let v = f.random.normals(f.model.parameterCount)
        var hv: [Float] = [], gradient: [Float] = []
        let value = try f.workspace.hessianVectorProduct(at: f.theta, on: f.batch, direction: v, into: &hv, gradient: &gradient)
        #expect(gradient == (try f.gradient(at: f.theta)), "the R-pass's gradient differs from the plain gradient")
        let norm = { (x: [Float]) in dot(x, x).squareRoot() }

        for (name, u) in f.directions() {
            let exact = f.reference.loss(f.theta, u: u, v: v, batch: f.batch)
            #expect(relativeError(value.loss, exact.a) < 1e-5, "\(c.name): loss \(value.loss) vs reference \(exact.a)")
            // Errors relative to the value, or to a scale below which a value is "zero" for float32 inputs.
            let gu = dot(gradient, u), gScale = 1e-3 * norm(gradient) * norm(u)
            #expect(abs(gu - exact.b) <= 2e-4 * max(abs(exact.b), gScale),
                    "\(c.name): ∇L·u along \(name) = \(gu), reference \(exact.b)")
            let uHv = dot(u, hv), hScale = 1e-3 * norm(hv) * norm(u)
            #expect(abs(uHv - exact.d) <= 2e-3 * max(abs(exact.d), hScale),
                    "\(c.name): uᵀHv along \(name) = \(uHv), reference \(exact.d)")
        }
    }

    /// The reference itself against central finite differences in double precision, so that the tests do
    /// not rest on an unchecked reference.
    @Test(arguments: derivativeCases)
    func referenceAgreesWithDoublePrecisionFiniteDifferences(_ c: DerivativeCase) throws {
        var f = try DerivativeFixture(c, seed: 22)
        let u = f.random.normals(f.model.parameterCount), v = f.random.normals(f.model.parameterCount)
        let exact = f.reference.loss(f.theta, u: u, v: v, batch: f.batch)
        // Steps along u taken in double inside the reference: its value and its ε₂ part ∇L·v at θ ± h u.
        let h = 1e-7
        let plus = f.reference.loss(f.theta, u: u, v: v, batch: f.batch, shift: h)
        let minus = f.reference.loss(f.theta, u: u, v: v, batch: f.batch, shift: -h)
        let dLdu = (plus.a - minus.a) / (2 * h), dLvdu = (plus.c - minus.c) / (2 * h)
        #expect(relativeError(dLdu, exact.b, floor: 1e-8) < 1e-6, "\(c.name): reference ∇L·u \(exact.b) vs central differences \(dLdu)")
        #expect(relativeError(dLvdu, exact.d, floor: 1e-8) < 1e-5, "\(c.name): reference uᵀHv \(exact.d) vs central differences of ∇L·v \(dLvdu)")
    }

    /// The float32 implementation against central finite differences of itself, on the smooth cases.
    @Test(arguments: derivativeCases.filter { (try? $0.isSmooth()) == true })
    func floatFiniteDifferences(_ c: DerivativeCase) throws {
        var f = try DerivativeFixture(c, seed: 23)
        let gradient = try f.gradient(at: f.theta)
        let loss = { [f] (p: [Float]) in try f.workspace.loss(at: p, on: f.batch).loss }
        let norm = { (x: [Float]) in dot(x, x).squareRoot() }
        for (name, u) in f.directions() {
            let numeric = try FiniteDifferences.directional(loss, at: f.theta, along: u, step: c.step)
            let gu = dot(gradient, u)
            #expect(abs(gu - numeric) <= 2e-3 * max(abs(numeric), 1e-2 * norm(gradient) * norm(u)),
                    "\(c.name): ∇L·u along \(name) = \(gu), finite differences \(numeric)")
        }
        let v = f.random.normals(f.model.parameterCount)
        var hv: [Float] = []
        try f.workspace.hessianVectorProduct(at: f.theta, on: f.batch, direction: v, into: &hv)
        let numeric = try FiniteDifferences.directional({ [f] in try f.gradient(at: $0) }, at: f.theta, along: v, step: c.step)
        #expect(relativeError(hv.map(Double.init), numeric) < 1e-2, "\(c.name): H v against finite differences of gradients")
    }

    /// The derivatives with respect to the input (``Workspace/differentiatesInput``): dL/dx and
    /// ∂⟨∇_θ L, v⟩/∂x against finite differences along a random input direction, with the parameters'
    /// gradient and H·v unchanged by computing them.
    @Test(arguments: derivativeCases.filter { (try? $0.isSmooth()) == true && (try? $0.make().inputShapes.count) == 1 })
    func inputDerivativesMatchFiniteDifferences(_ c: DerivativeCase) throws {
        var f = try DerivativeFixture(c, seed: 25)
        let v = f.random.normals(f.model.parameterCount), u = f.random.normals(f.batch.inputs.count)
        var hv: [Float] = [], gradient: [Float] = [], plainHV: [Float] = []
        try f.workspace.hessianVectorProduct(at: f.theta, on: f.batch, direction: v, into: &plainHV)
        f.workspace.differentiatesInput = true
        try f.workspace.hessianVectorProduct(at: f.theta, on: f.batch, direction: v, into: &hv, gradient: &gradient)
        let (inputGradient, inputHV) = (f.workspace.inputGradient, f.workspace.inputHessianVector)
        let plainGradient = try f.gradient(at: f.theta)
        #expect(hv == plainHV && gradient == plainGradient, "\(c.name): computing the input's derivatives changed the parameters'")
        #expect(inputGradient.count == f.batch.inputs.count && inputHV.count == f.batch.inputs.count)
        f.workspace.differentiatesInput = false
        func shifted(_ x: [Float]) throws -> Batch {
            try Batch(inputs: Tensor(shape: f.batch.inputs.shape, scalars: x), targets: f.batch.targets)
        }
        let loss = { [f] (x: [Float]) in try f.workspace.loss(at: f.theta, on: shifted(x)).loss }
        let gradientAlongV = { [f] (x: [Float]) -> Double in
            var g: [Float] = []
            try f.workspace.gradient(at: f.theta, on: shifted(x), into: &g)
            return dot(g, v)
        }
        // The loss moves less along an input direction than along a parameter one: a longer step keeps
        // float rounding small beside the change (the stencil's error is O(h⁴)).
        let x = f.batch.inputs.scalars, step = 10 * c.step
        let numeric = try FiniteDifferences.directional(loss, at: x, along: u, step: step)
        // Errors relative to the value, or to a scale below which a value is "zero" for float32 inputs.
        let norm = { (x: [Float]) in dot(x, x).squareRoot() }
        #expect(abs(dot(inputGradient, u) - numeric) <= 2e-3 * max(abs(numeric), 1e-2 * norm(inputGradient) * norm(u)),
                "\(c.name): dL/dx·u = \(dot(inputGradient, u)), finite differences \(numeric)")
        let mixed = try FiniteDifferences.directional(gradientAlongV, at: x, along: u, step: step)
        #expect(abs(dot(inputHV, u) - mixed) <= 1e-2 * max(abs(mixed), 1e-2 * norm(inputHV) * norm(u)),
                "\(c.name): ∂⟨∇L, v⟩/∂x·u = \(dot(inputHV, u)), finite differences \(mixed)")
    }

    /// The Hessian is symmetric: u·(H v) = v·(H u).
    @Test(arguments: derivativeCases)
    func hessianIsSymmetric(_ c: DerivativeCase) throws {
        var f = try DerivativeFixture(c, seed: 24)
        let u = f.random.normals(f.model.parameterCount), v = f.random.normals(f.model.parameterCount)
        var hu: [Float] = [], hv: [Float] = []
        try f.workspace.hessianVectorProduct(at: f.theta, on: f.batch, direction: u, into: &hu)
        try f.workspace.hessianVectorProduct(at: f.theta, on: f.batch, direction: v, into: &hv)
        #expect(relativeError(dot(u, hv), dot(v, hu), floor: 1e-3) < 1e-3, "\(c.name): u·Hv = \(dot(u, hv)) but v·Hu = \(dot(v, hu))")
    }
}
