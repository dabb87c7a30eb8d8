/// N-way K-shot episodes from an ``ImageFolder`` (mini-ImageNet, CUB, your own folders): the classes of one
/// split, inputs `[channels, side, side]` standardised per channel, optionally augmented.
///
/// An episode draws `ways` distinct classes and, for each, `shots + queries` distinct images; class `j` of the
/// episode gets label `j`. Support and query sets are class-major. With ``Augmentation/cropFlip`` every image
/// is cut at a random offset from a copy padded by `side / 10` pixels of zeros on each side, and mirrored
/// left-right with probability ½ (torchvision's `RandomCrop(side, padding)` and `RandomHorizontalFlip`).
/// Sampling, augmentation included, is a pure function of the random source.
public struct ImageTasks: TaskDistribution {
    /// Random changes to the training images.
    public enum Augmentation: String, Sendable, CaseIterable {
        case none
        case cropFlip = "crop-flip"
    }

    /// How pixel values v in [0, 255] become inputs: (v / 255 − mean) / deviation per channel.
    public enum Normalization: String, Sendable, CaseIterable {
        /// The training classes' own mean and standard deviation (``ImageFolder/mean``).
        case dataset
        /// ImageNet's: mean (0.485, 0.456, 0.406), deviation (0.229, 0.224, 0.225), as torchvision's models use.
        case imagenet
        /// v / 255.
        case none
    }

    public let dataset: ImageFolder
    /// Indices into `dataset.classes`.
    public let classes: [Int]
    public let ways: Int, shots: Int, queries: Int
    public let augmentation: Augmentation
    public let mean: [Float], standardDeviation: [Float]

    public init(_ dataset: ImageFolder, classes: [Int], ways: Int, shots: Int, queries: Int,
                augmentation: Augmentation = .none, normalization: Normalization = .dataset) throws {
        guard ways >= 2 else { throw MetaCoreError.argument("an episode needs at least 2 ways (classes), got \(ways)") }
        guard shots >= 1, queries >= 1 else {
            throw MetaCoreError.argument("an episode needs at least 1 shot and 1 query per class, got \(shots) and \(queries)")
        }
        if let bad = classes.first(where: { !dataset.classes.indices.contains($0) }) {
            throw MetaCoreError.argument("class index \(bad) is outside the dataset's \(dataset.classes.count) classes")
        }
        guard ways <= classes.count else {
            throw MetaCoreError.argument("\(ways)-way episodes need \(ways) classes; this split has \(classes.count)")
        }
        switch normalization {
        case .dataset: (mean, standardDeviation) = (dataset.mean, dataset.standardDeviation)
        case .none: (mean, standardDeviation) = (Array(repeating: 0, count: dataset.channels), Array(repeating: 1, count: dataset.channels))
        case .imagenet:
            guard dataset.channels == 3 else { throw MetaCoreError.argument("ImageNet's normalisation is for RGB images; these are gray (use --normalize dataset)") }
            (mean, standardDeviation) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        }
        self.dataset = dataset; self.classes = classes
        self.ways = ways; self.shots = shots; self.queries = queries; self.augmentation = augmentation
        try checkImages(queries: queries)
    }

    private func checkImages(queries: Int) throws {
        if let small = classes.first(where: { dataset.classes[$0].images.count < shots + queries }) {
            let imageClass = dataset.classes[small]
            throw MetaCoreError.argument("class '\(imageClass.name)' has \(imageClass.images.count) images, fewer than the \(shots) shots + \(queries) queries an episode takes of each class")
        }
    }

    /// Every class's name.
    public var classNames: [String] { classes.map { dataset.classes[$0].name } }

    public var inputShape: [Int] { [dataset.channels, dataset.side, dataset.side] }
    public var outputShape: [Int] { [ways] }
    public var isClassification: Bool { true }

    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let queries = queryCount ?? self.queries
        guard queries >= 1 else { throw MetaCoreError.argument("an episode needs at least 1 query per class, got \(queries)") }
        if queries != self.queries { try checkImages(queries: queries) }
        let chosen = OmniglotTasks.choose(ways, from: classes.count, using: &random).map { dataset.classes[classes[$0]] }
        let picked = chosen.map { imageClass in
            OmniglotTasks.choose(shots + queries, from: imageClass.images.count, using: &random).map { imageClass.images.lowerBound + $0 }
        }
        func batch(_ range: Range<Int>) throws -> Batch {
            let images = picked.flatMap { $0[range] }
            let labels = picked.indices.flatMap { label in repeatElement(Int32(label), count: range.count) }
            return try self.batch(images, labels: labels, random: &random)
        }
        return Task(support: try batch(0 ..< shots), query: try batch(shots ..< shots + queries))
    }

    /// `images` (indices into the dataset) as a batch `[n, channels, side, side]`, augmented if asked.
    func batch(_ images: [Int], labels: [Int32], random: inout RandomSource) throws -> Batch {
        let side = dataset.side, channels = dataset.channels, plane = side * side, size = plane * channels
        let pad = side / 10
        var inputs = [Float](repeating: 0, count: images.count * size)
        let scale = standardDeviation.map { 1 / (255 * $0) }, shift = zip(mean, standardDeviation).map { -$0 / $1 }
        inputs.withUnsafeMutableBufferPointer { out in
            for (n, image) in images.enumerated() {
                // Output pixel (y, x) reads source (y + dy, x + dx), mirrored if `flip`; outside the image: zero.
                var dy = 0, dx = 0, flip = false
                if augmentation == .cropFlip {
                    dy = Int(random.next() % UInt64(2 * pad + 1)) - pad
                    dx = Int(random.next() % UInt64(2 * pad + 1)) - pad
                    flip = random.next() & 1 == 1
                }
                dataset.withPixels(of: image) { pixels in
                    for c in 0 ..< channels {
                        let base = n * size + c * plane
                        for y in 0 ..< side {
                            let sy = y + dy
                            for x in 0 ..< side {
                                let sx = (flip ? side - 1 - x : x) + dx
                                let v: Float = sy >= 0 && sy < side && sx >= 0 && sx < side ? Float(pixels[(sy * side + sx) * channels + c]) : 0
                                out[base + y * side + x] = v * scale[c] + shift[c]
                            }
                        }
                    }
                }
            }
        }
        return try Batch(inputs: Tensor(shape: [images.count] + inputShape, scalars: inputs), labels: labels)
    }

    static let registrations = [
        TaskFamilyEntry(name: "images", summary: "N-way K-shot episodes from a folder of images (class folders, split folders, mini-ImageNet, CUB)",
                        options: [OptionSpec("image-size", .int(8 ... 1024), default: .int(84), help: "side of the square images, in pixels"),
                                  OptionSpec("color", .choice(["rgb", "gray"]), default: .string("rgb"), help: "decode to RGB or to gray"),
                                  OptionSpec("square", .choice(Image.SquareMode.allCases.map(\.rawValue)), default: .string("stretch"),
                                             help: "make images square by stretching, or by resizing the shorter side and cutting the centre"),
                                  OptionSpec("invert", .bool, default: .bool(false), help: "invert the pixels (ink on paper becomes bright)"),
                                  OptionSpec("layout", .choice(ImageFolder.Layout.allCases.map(\.rawValue)), default: .string("auto"),
                                             help: "how the folder is laid out (auto: found from its files)"),
                                  OptionSpec("class-split", .ints(0 ... 100), default: .string("64,16,20"),
                                             help: "class folders without split files: percent of classes for train,val,test (seeded shuffle)"),
                                  OptionSpec("skip-bad-images", .bool, default: .bool(false),
                                             help: "leave out files that do not decode (counted and named) instead of stopping"),
                                  OptionSpec("augment", .choice(Augmentation.allCases.map(\.rawValue)), default: .string("none"),
                                             help: "training images: none, or random crops of the zero-padded image and left-right flips"),
                                  OptionSpec("normalize", .choice(Normalization.allCases.map(\.rawValue)), default: .string("dataset"),
                                             help: "standardise inputs by the training classes' statistics, ImageNet's, or not at all"),
                                  OptionSpec("eval-split", .choice(["test", "val"]), default: .string("test"), evaluationMayChange: true,
                                             help: "the classes evaluation draws from")],
                        dataset: ImageFolder.self, defaultBackbone: "conv4", evaluationQueries: 15) { request in
            let options = request.options, config = request.configuration
            let dataset = try request.data.load(ImageFolder.self, for: options)
            let split: ImageFolder.Split = request.split == .train ? .train : options.string("eval-split") == "val" ? .validation : .test
            return try ImageTasks(dataset, classes: dataset.classes(in: split), ways: request.ways(), shots: config.shots, queries: config.queries,
                                  augmentation: request.split == .train ? Augmentation(rawValue: options.string("augment")!)! : .none,
                                  normalization: Normalization(rawValue: options.string("normalize")!)!)
        },
    ]
}
