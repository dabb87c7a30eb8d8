/// N-way K-shot classification episodes of random images: Gaussian pixels, labels `0 ..< ways` in turn.
///
/// Nothing can be learned from them; they exist so that the image workloads (benchmarks, tests of the
/// learners' derivatives) run anywhere, with no dataset present. Costs are those of real episodes of the
/// same shape.
public struct SyntheticImageTasks: TaskDistribution {
    public let ways: Int, shots: Int, queries: Int
    public let inputShape: [Int]

    /// - Parameters: shots and queries are per class; `inputShape` is per image (e.g. `[1, 28, 28]`).
    public init(ways: Int, shots: Int, queries: Int, inputShape: [Int]) throws {
        guard ways > 0, shots > 0, queries > 0 else {
            throw MetaCoreError.argument("synthetic episodes need ways, shots and queries >= 1, got \(ways), \(shots), \(queries)")
        }
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 > 0 }) else {
            throw MetaCoreError.shape("synthetic images need a positive per-sample shape, got \(describe(inputShape))")
        }
        self.ways = ways; self.shots = shots; self.queries = queries; self.inputShape = inputShape
    }

    public var outputShape: [Int] { [ways] }
    public var isClassification: Bool { true }

    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let size = inputShape.reduce(1, *)
        func batch(_ perClass: Int) throws -> Batch {
            let n = ways * perClass
            let pixels = (0 ..< n * size).map { _ in random.normal() }
            return try Batch(inputs: Tensor(shape: [n] + inputShape, scalars: pixels), labels: (0 ..< n).map { Int32($0 % ways) })
        }
        return Task(support: try batch(shots), query: try batch(queryCount ?? queries))
    }
}
