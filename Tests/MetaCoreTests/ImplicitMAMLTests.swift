import CKernels
import Foundation
import Testing
@testable import MetaCore

/// Built with AddressSanitizer or ThreadSanitizer (`make sanitize`): their runtimes hold freed memory back
/// (quarantine, shadow), so a process's resident size no longer says what it needs.
let underMemorySanitizer = ["__asan_init", "__tsan_init"].contains { (name: String) in dlsym(nil, name) != nil }   // nil handle: RTLD_DEFAULT

/// iMAML's two approximations checked apart: the conjugate-gradient solve against the exact linear solve
/// (a model small enough to form its Hessian), and the implicit meta-gradient against finite differences of
/// the meta-loss when the inner problem is solved to its optimum.
@Suite("Implicit MAML")
struct ImplicitMAMLTests {
    /// 97 parameters: small enough for 97 Hessian-vector products to form H.
    let model = try! Model.mlp([1, 8, 8, 1], activation: .tanh)

    func task(_ seed: UInt64) throws -> Task {
        var random = RandomSource(seed: seed)
        return try SinusoidTasks(shots: 5).sample(&random)
    }

    func start(_ seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed &+ 1)
        return model.initialParameters(seed: seed).map { $0 + 0.05 * random.normal() }
    }

    /// (I + H/λ)⁻¹ b by conjugate gradient run to convergence equals LAPACKE's solve of the formed system,
    /// and so does the damped ((1 + δ) I + H/(λ + μ))⁻¹ b; five steps, iMAML's usual budget, are closer to it
    /// than the first-order b.
    @Test(arguments: [(0, 0), (1, 10)] as [(Float, Float)])
    func conjugateGradientEqualsTheExactSolve(damping: Float, lambdaDamping: Float) throws {
        let learner = try ImplicitMAML(inner: InnerLoop(steps: 50, learningRate: 0.05), lambda: 2, cgSteps: 400, cgTolerance: 1e-7,
                                       damping: damping, lambdaDamping: lambdaDamping)
        let workspace = Workspace(model: model), p = model.parameterCount
        let scale = Double(learner.lambda + lambdaDamping), identity = 1 + Double(damping)
        for seed: UInt64 in [1, 2] {
            let task = try task(seed), meta = start(seed)
            let phi = try learner.adapt(meta, support: task.support, steps: learner.inner.steps, workspace: workspace)
            var b: [Float] = []
            _ = try workspace.gradient(at: phi, on: task.query, into: &b)
            // A = (1 + δ) I + H/(λ + μ), H formed column by column and symmetrised, in double.
            var a = [Double](repeating: 0, count: p * p), column: [Float] = []
            for j in 0 ..< p {
                var e = [Float](repeating: 0, count: p)
                e[j] = 1
                try workspace.hessianVectorProduct(at: phi, on: task.support, direction: e, into: &column)
                for i in 0 ..< p { a[i * p + j] += Double(column[i]) / scale / 2; a[j * p + i] += Double(column[i]) / scale / 2 }
                a[j * p + j] += identity
            }
            var exact = b.map(Double.init)
            #expect(mc_symmetric_solve(Int32(p), 1, &a, &exact) == 0)
            let solved = try learner.solve(at: phi, support: task.support, rightHandSide: b, workspace: workspace)
            let five = try ImplicitMAML(inner: learner.inner, lambda: learner.lambda, cgSteps: 5, damping: damping, lambdaDamping: lambdaDamping)
                .solve(at: phi, support: task.support, rightHandSide: b, workspace: workspace)
            func distance(_ x: [Float]) -> Double {
                (zip(x, exact).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) } / exact.reduce(0.0) { $0 + $1 * $1 }).squareRoot()
            }
            #expect(distance(solved) < 1e-4, "task \(seed): conjugate gradient is \(distance(solved)) from the exact solve")
            #expect(distance(five) < distance(b), "task \(seed): 5 steps \(distance(five)), first order \(distance(b))")
        }
    }

    /// With the inner problem solved to its optimum (strongly convex at λ = 5, 200 steps), the implicit
    /// meta-gradient is the derivative of the meta-loss: central differences along random directions, over all
    /// meta-parameters and within each tensor.
    @Test func implicitGradientEqualsFiniteDifferencesAtTheOptimum() throws {
        let learner = try ImplicitMAML(inner: InnerLoop(steps: 200, learningRate: 0.05), lambda: 5, cgSteps: 200, cgTolerance: 1e-7)
        let workspace = Workspace(model: model)
        for seed: UInt64 in [3, 4] {
            let task = try task(seed), meta = start(seed)
            var gradient: [Float] = []
            _ = try learner.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
            var random = RandomSource(seed: seed)
            for (name, range) in [("all", 0 ..< meta.count)] + model.layout.entries.map({ ($0.name, $0.range) }) {
                var u = [Float](repeating: 0, count: meta.count)
                for i in range { u[i] = random.normal() }
                u.scale(by: Float(1 / u.norm))
                let analytic = zip(gradient, u).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let error = try [1e-2, 3e-3].map { h in
                    let numeric = try FiniteDifferences.directional({ try learner.metaLoss($0, task: task, workspace: workspace).loss }, at: meta, along: u, step: h)
                    return abs(analytic - numeric) / max(abs(numeric), 1e-4)
                }.min()!
                #expect(error < 2e-3, "task \(seed), \(name): relative error \(error)")
            }
        }
    }

    /// The products of one solve start from a single pass held at φ, and nothing of the inner trajectory is
    /// held: the workspace's held passes are the same after 5 inner steps and after 40.
    @Test func theSolveReusesOnePassAndKeepsNoTrajectory() throws {
        let task = try task(5), meta = start(5)
        for steps in [5, 40] {
            let workspace = Workspace(model: model)
            let learner = try ImplicitMAML(inner: InnerLoop(steps: steps, learningRate: 0.05), lambda: 2, cgSteps: 5, cgTolerance: 0)
            var gradient: [Float] = []
            _ = try learner.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
            #expect(workspace.reusedPasses == 4, "\(steps) steps: \(workspace.reusedPasses) products reused the held pass")
            #expect(workspace.heldPasses == 0)
        }
    }

    /// The same seen as the process's memory, in `metactl train`'s report (its own process, so no other test's
    /// allocations count): from 1 to 6 inner steps on Conv-4, second-order MAML's training peak grows by the
    /// held trajectory, several megabytes, and iMAML's by less than one.
    @Test(.disabled(if: underMemorySanitizer, "a sanitizer's runtime holds freed memory back"))
    func trainingMemoryDoesNotGrowWithTheInnerSteps() throws {
        let directory = try temporaryDirectory()
        func above(_ algorithm: String, steps: Int) throws -> Double {
            let run = try runMetactl(["train", "--algorithm", algorithm, "--task", "synthetic-images", "--image", "1,28,28", "--ways", "5",
                                      "--shots", "1", "--queries", "5", "--meta-batch", "2", "--backbone", "conv4", "--inner-steps", "\(steps)",
                                      "--iterations", "1", "--threads", "1", "--checkpoint", "\(algorithm)-\(steps).safetensors"], in: directory)
            #expect(run.status == 0, "\(run.err)")
            // "peak resident memory while training P MB: A MB above the S MB held when it started"
            let words = run.out.split(separator: "\n").first { $0.hasPrefix("peak resident memory") }?.split(separator: " ") ?? []
            let value = words.firstIndex(of: "above").flatMap { Double(words[$0 - 2]) }
            #expect(value != nil, "no peak-memory line in: \(run.out)")
            return value ?? .nan
        }
        let maml = try above("maml", steps: 6) - above("maml", steps: 1)
        let imaml = try above("imaml", steps: 6) - above("imaml", steps: 1)
        #expect(maml > 5, "second-order MAML's peak grew by \(maml) MB from 1 to 6 steps")
        #expect(abs(imaml) < 1, "iMAML's peak grew by \(imaml) MB from 1 to 6 steps")
    }

    /// The authors' inner loop: plain gradient steps, then φ ← θ + (1 − αλ)(φ − θ); the meta-gradient is the
    /// solve at that φ of the query gradient there, and evaluation predicts after the plain steps alone.
    @Test func pullBackSolvesAtThePulledBackSolutionAndEvaluatesThePlainSteps() throws {
        let workspace = Workspace(model: model)
        let learner = try ImplicitMAML(inner: InnerLoop(steps: 8, learningRate: 0.1), lambda: 2, cgSteps: 5, cgTolerance: 0,
                                       damping: 1, lambdaDamping: 10, innerProblem: .pullBack)
        let task = try task(6), meta = start(6)
        var plain = meta, g: [Float] = []
        for _ in 0 ..< 8 {
            _ = try workspace.gradient(at: plain, on: task.support, into: &g)
            plain.add(g, scaledBy: -0.1)
        }
        let pulled = zip(meta, plain).map { $0 + 0.8 * ($1 - $0) }
        var b: [Float] = []
        let expectedLoss = try workspace.gradient(at: pulled, on: task.query, into: &b)
        let expected = try learner.solve(at: pulled, support: task.support, rightHandSide: b, workspace: workspace)
        var gradient: [Float] = []
        let value = try learner.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
        func distance(_ u: [Float], _ v: [Float]) -> Double { zip(u, v).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot() / max(v.norm, 1e-12) }
        #expect(distance(try learner.innerSolution(meta, support: task.support, workspace: workspace), pulled) < 1e-5)
        #expect(abs(value.loss - expectedLoss.loss) < 1e-5 * max(1, abs(expectedLoss.loss)))
        #expect(distance(gradient, expected) < 1e-4, "meta-gradient \(distance(gradient, expected)) from the solve at the pulled-back φ")
        #expect(abs(try learner.metaLoss(meta, task: task, workspace: workspace).loss - expectedLoss.loss) < 1e-5 * max(1, abs(expectedLoss.loss)))
        let predicted = try learner.predict(meta, support: task.support, queries: task.query.inputs, steps: 8, workspace: workspace)
        let plainPrediction = try workspace.predict(at: plain, inputs: task.query.inputs)
        #expect(distance(predicted.scalars, plainPrediction.scalars) < 1e-5)
        // A pull-back that would land on θ (αλ = 1) or past it is refused in training, and evaluation still adapts.
        let overshoot = try ImplicitMAML(inner: InnerLoop(steps: 8, learningRate: 0.5), lambda: 2, innerProblem: .pullBack)
        #expect { try overshoot.metaGradient(meta, task: task, workspace: workspace, into: &gradient) } throws: { "\($0)".contains("αλ < 1") }
        _ = try overshoot.predict(meta, support: task.support, queries: task.query.inputs, steps: 8, workspace: workspace)
    }
}
