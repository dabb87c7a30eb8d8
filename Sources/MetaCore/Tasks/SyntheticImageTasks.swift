/// N-way K-shot classification episodes of synthetic images of any shape, labels `0 ..< ways` in turn.
///
/// Without `noise`, every pixel is Gaussian: nothing can be learned, and the episodes exist so that the image
/// workloads (benchmarks, tests of the learners' derivatives) run anywhere, with no dataset present, at the
/// cost of real episodes of the same shape. With `noise`, each episode draws one Gaussian image per class and
/// its examples are that image plus Gaussian noise of that standard deviation: a task the learners can
/// solve from the support set, on images of any size and channels (`metactl train --task synthetic-images`).
public struct SyntheticImageTasks: TaskDistribution {
    public let ways: Int, shots: Int, queries: Int
    public let inputShape: [Int]
    /// The noise about each class's image; `nil`: no class images, pure noise.
    public let noise: Float?

    /// - Parameters: shots and queries are per class; `inputShape` is per image (e.g. `[3, 84, 84]`).
    public init(ways: Int, shots: Int, queries: Int, inputShape: [Int], noise: Float? = nil) throws {
        guard ways > 0, shots > 0, queries > 0 else {
            throw MetaCoreError.argument("synthetic episodes need ways, shots and queries >= 1, got \(ways), \(shots), \(queries)")
        }
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 > 0 }) else {
            throw MetaCoreError.shape("synthetic images need a positive per-sample shape, got \(describe(inputShape))")
        }
        if let noise, !(noise.isFinite && noise >= 0) {
            throw MetaCoreError.argument("synthetic images need a finite noise >= 0, got \(noise)")
        }
        self.ways = ways; self.shots = shots; self.queries = queries; self.inputShape = inputShape; self.noise = noise
    }

    static let registrations = [
        TaskFamilyEntry(name: "synthetic-images", summary: "N-way K-shot episodes of synthetic images of any shape: a random image per class, examples with noise about it (no dataset)",
                        options: [OptionSpec("image", .ints(1 ... 4096), default: .string("3,84,84"), help: "channels,height,width of the images"),
                                  OptionSpec("noise", .float(0 ... 100), default: .float(1), help: "standard deviation of the examples about their class's image (whose pixels have 1)")],
                        defaultBackbone: "conv4") { request in
            let image = request.options.ints("image")!
            guard image.count == 3 else {
                throw MetaCoreError.argument("--image takes channels,height,width (three numbers), got \(request.options.string("image")!)")
            }
            return try SyntheticImageTasks(ways: request.ways(), shots: request.configuration.shots, queries: request.configuration.queries,
                                           inputShape: image, noise: Float(request.options.double("noise")!))
        },
    ]

    public var outputShape: [Int] { [ways] }
    public var isClassification: Bool { true }

    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let size = inputShape.reduce(1, *)
        let classes: [Float] = noise == nil ? [] : (0 ..< ways * size).map { _ in random.normal() }
        func batch(_ perClass: Int) throws -> Batch {
            let n = ways * perClass
            var pixels = (0 ..< n * size).map { _ in random.normal() }
            if let noise {
                for i in pixels.indices { pixels[i] = classes[(i / size) % ways * size + i % size] + noise * pixels[i] }
            }
            return try Batch(inputs: Tensor(shape: [n] + inputShape, scalars: pixels), labels: (0 ..< n).map { Int32($0 % ways) })
        }
        return Task(support: try batch(shots), query: try batch(queryCount ?? queries))
    }
}
