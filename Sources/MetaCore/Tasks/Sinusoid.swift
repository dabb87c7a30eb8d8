/// Sinusoid regression as in Finn et al. 2017: y = A sin(x − φ), amplitude A uniform in [0.1, 5], phase φ
/// uniform in [0, π], inputs x uniform in [−5, 5]; K-shot support and query sets from the same curve.
public struct SinusoidTasks: TaskDistribution {
    public let shots: Int
    public let queries: Int
    public var amplitude: ClosedRange<Float> = 0.1 ... 5
    public var phase: ClosedRange<Float> = 0 ... .pi
    public var domain: ClosedRange<Float> = -5 ... 5

    /// - Parameters: shots: support points per task; queries: query points per task (default: `shots`).
    public init(shots: Int = 10, queries: Int? = nil) throws {
        guard shots > 0 else { throw MetaCoreError.argument("sinusoid tasks need at least 1 shot, got \(shots)") }
        guard (queries ?? shots) > 0 else { throw MetaCoreError.argument("sinusoid tasks need at least 1 query point, got \(queries ?? 0)") }
        self.shots = shots
        self.queries = queries ?? shots
    }

    public var inputShape: [Int] { [1] }
    public var outputShape: [Int] { [1] }
    public var isClassification: Bool { false }

    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let a = random.uniform(amplitude.lowerBound, amplitude.upperBound)
        let p = random.uniform(phase.lowerBound, phase.upperBound)
        func points(_ n: Int) throws -> Batch {
            let x = (0 ..< n).map { _ in random.uniform(domain.lowerBound, domain.upperBound) }
            return try Batch(inputs: Tensor(shape: [n, 1], scalars: x), values: Tensor(shape: [n, 1], scalars: x.map { a * sin($0 - p) }))
        }
        return Task(support: try points(shots), query: try points(queryCount ?? queries))
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension SinusoidTasks {
    static let registrations = [
        TaskFamilyEntry(name: "sine", summary: "sinusoid regression, y = A sin(x - phase) (Finn et al. 2017)",
                        defaultBackbone: "mlp", evaluationQueries: 100, takesWays: false) { request in
            try SinusoidTasks(shots: request.configuration.shots, queries: request.configuration.queries)
        },
    ]
}
