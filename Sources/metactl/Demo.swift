import ArgumentParser
import MetaCore

/// Trains the MLP 1-40-40-1 by gradient descent on one synthetic sine curve and prints its loss falling:
/// the smallest end-to-end use of the model, gradient and workspace.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit the MLP 1-40-40-1 to a synthetic sine curve by gradient descent (no dataset needed).")

    @Option(parsing: .unconditional, help: "Gradient-descent steps.") var steps = 2000
    @Option(parsing: .unconditional, help: "Learning rate.") var learningRate: Float = 0.02
    @Option(parsing: .unconditional, help: "Training points, uniform in [-5, 5].") var points = 100
    @Option(parsing: .unconditional, help: "Random seed for the curve, the points and the initialisation.") var seed: UInt64 = 0

    func validate() throws {
        guard (1 ... 100_000_000).contains(steps) else { throw ValidationError("--steps must be between 1 and 100000000, got \(steps)") }
        guard (1 ... 10_000_000).contains(points) else { throw ValidationError("--points must be between 1 and 10000000, got \(points)") }
        guard learningRate > 0, learningRate.isFinite else { throw ValidationError("--learning-rate must be a positive number, got \(learningRate)") }
    }

    func run() throws {
        var random = RandomSource(seed: seed)
        let amplitude = random.uniform(0.1, 5), phase = random.uniform(0, .pi)
        let x = (0 ..< points).map { _ in random.uniform(-5, 5) }
        let batch = try Batch(inputs: Tensor(shape: [points, 1], scalars: x),
                              values: Tensor(shape: [points, 1], scalars: x.map { amplitude * sin($0 - phase) }))
        let model = try Model.mlp([1, 40, 40, 1])
        let workspace = Workspace(model: model)
        var theta = model.initialParameters(seed: seed)
        var gradient = [Float](repeating: 0, count: model.parameterCount)
        print("fitting y = \(amplitude) sin(x - \(phase)) on \(points) points with the MLP 1-40-40-1 (\(model.parameterCount) parameters)")
        let clock = ContinuousClock(), start = clock.now
        for step in 0 ... steps {
            let loss = try workspace.gradient(at: theta, on: batch, into: &gradient).loss
            if step % max(1, steps / 10) == 0 || step == steps {
                print("step \(step)  mse \(String(format: "%.5f", loss))")
            }
            if step < steps { for i in theta.indices { theta[i] -= learningRate * gradient[i] } }
        }
        print("done in \(clock.now - start)")
    }
}

import Foundation
