/// How an image file becomes a model input, as a task family prepares its images: the channels, the square,
/// the inversion, and the per-channel standardisation. ``FewShotClassifier`` and `metactl predict` apply the
/// training run's to new images, and checkpoints record it (`metacore.inputs`), so a model is used on new
/// images exactly as it was trained.
public struct ImagePreprocessing: Sendable, Hashable, Codable {
    public var side: Int
    public var channels: Int
    public var square: Image.SquareMode
    /// v → 255 − v before the standardisation (Omniglot's ink becomes 1).
    public var invert: Bool
    /// Per channel, in [0, 1] units: inputs are (v / 255 − mean) / standardDeviation.
    public var mean: [Float]
    public var standardDeviation: [Float]

    public init(side: Int, channels: Int, square: Image.SquareMode = .stretch, invert: Bool = false, mean: [Float]? = nil,
                standardDeviation: [Float]? = nil) {
        self.side = side; self.channels = channels; self.square = square; self.invert = invert
        self.mean = mean ?? Array(repeating: 0, count: channels)
        self.standardDeviation = standardDeviation ?? Array(repeating: 1, count: channels)
    }

    /// The shape of one input, `[channels, side, side]`.
    public var inputShape: [Int] { [channels, side, side] }

    /// `image` with the channels and the square (inverted if asked): the 8-bit image a dataset stores.
    public func squared(_ image: Image) throws -> Image {
        let converted = try image.converted(channels: channels)
        switch square {
        case .stretch: return try converted.resized(height: side, width: side, inverting: invert)
        case .centerCrop:
            let cropped = try converted.resized(toFit: side, mode: .centerCrop)
            return invert ? try cropped.inverted() : cropped
        }
    }

    /// The model input for `image`, `[channels, side, side]` scalars.
    public func input(_ image: Image) throws -> [Float] {
        try squared(image).scalars(mean: mean, standardDeviation: standardDeviation)
    }

    /// Throws unless the values make sense (from a checkpoint, say).
    public func check() throws {
        guard (1 ... 4096).contains(side), channels == 1 || channels == 3, mean.count == channels, standardDeviation.count == channels,
              mean.allSatisfy(\.isFinite), standardDeviation.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw MetaCoreError(.corruptData, "invalid image preprocessing: \(side)px, \(channels) channels, mean \(mean), deviation \(standardDeviation)")
        }
    }
}

/// A task family whose inputs are images prepared by an ``ImagePreprocessing``, of named classes.
public protocol ImageTaskDistribution: TaskDistribution {
    var preprocessing: ImagePreprocessing { get }
    /// The names of the classes episodes draw from.
    var classNames: [String] { get }
}

extension OmniglotTasks: ImageTaskDistribution {
    /// Gray, inverted, area-resized to the dataset's side, in [0, 1].
    public var preprocessing: ImagePreprocessing { ImagePreprocessing(side: dataset.side, channels: 1, invert: true) }
}

extension ImageTasks: ImageTaskDistribution {
    public var preprocessing: ImagePreprocessing {
        ImagePreprocessing(side: dataset.side, channels: dataset.channels, square: dataset.square, invert: dataset.inverted,
                           mean: mean, standardDeviation: standardDeviation)
    }
}
