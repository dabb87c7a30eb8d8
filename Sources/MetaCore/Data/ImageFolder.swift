import Foundation
import Synchronization

/// Images sorted into a folder per class — your own data, or the layouts few-shot papers distribute — decoded
/// once to squares of one size and kept in a checksummed, memory-mapped cache.
///
/// ```swift
/// var settings = ImageFolder.Settings()      // 84x84 RGB, stretched, layout found from the files
/// settings.square = .centerCrop
/// let (images, _) = try ImageFolder.load(from: "data/mini-imagenet", settings: settings,
///                                        context: DatasetLoading(cacheDirectory: Omniglot.defaultCacheDirectory, threads: 8))
/// let training = images.classes(in: .train)  // 64 classes of 600 images
/// ```
///
/// Layouts (``Layout``), each with train, validation and test classes:
/// - **split folders**: `ROOT/train/CLASS/*`, `ROOT/val/CLASS/*` (or `validation`), `ROOT/test/CLASS/*`;
/// - **mini-ImageNet** as Ravi & Larochelle distribute it: `ROOT/images/*.jpg` with `train.csv`, `val.csv` and
///   `test.csv` (a `filename,label` header, then one image per line);
/// - **CUB-200-2011** as downloaded (`ROOT/images/NNN.Name/*.jpg`): its 200 classes in name order split as
///   Chen et al. 2019 (*A Closer Look at Few-shot Classification*) do — index i mod 2 = 0 train (100),
///   i mod 4 = 1 validation (50), i mod 4 = 3 test (50);
/// - **class folders**: `ROOT/CLASS/*` (torchvision's ImageFolder), split by `ROOT/train.txt`, `val.txt` and
///   `test.txt` (one class name per line) if they are there, else by a seeded shuffle of the classes in the
///   proportions of ``Settings/classSplit``.
///
/// Image files are `.png`, `.jpg` and `.jpeg` (any case); other files are ignored. Every image is decoded (gray
/// or RGB), optionally inverted, and made a ``Settings/side``-pixel square (``Image/resized(toFit:mode:)``). A file
/// that does not decode stops the load with its path, unless ``Settings/skipBadImages`` is set: then it is left
/// out, and counted and named in ``skipped``.
public struct ImageFolder: Sendable {
    /// How the classes and their splits are laid out on disk.
    public enum Layout: String, Sendable, CaseIterable, Codable {
        /// Found from the files: mini-ImageNet's CSVs, CUB's `images/` with `classes.txt`, split folders, else class folders.
        case auto
        case splitFolders = "split-folders"
        case miniImageNet = "mini-imagenet"
        case cub
        case classFolders = "class-folders"
    }

    /// Which classes a class belongs to.
    public enum Split: String, Sendable, CaseIterable, Codable {
        case train
        case validation = "val"
        case test
    }

    /// What the load makes of the files.
    public struct Settings: Hashable, Sendable {
        /// Side of the square images.
        public var side = 84
        /// 1 (gray) or 3 (RGB).
        public var channels = 3
        public var square = Image.SquareMode.stretch
        /// v → 255 − v (ink on paper, such as Omniglot's, becomes bright).
        public var invert = false
        public var layout = Layout.auto
        /// Class folders without split files: the percentages of classes for train, validation and test,
        /// shuffled with ``classSplitSeed``. Papers' own splits come with their layouts.
        public var classSplit = [64, 16, 20]
        public var classSplitSeed: UInt64 = 0
        /// Leave out (and count) files that do not decode, instead of stopping.
        public var skipBadImages = false
        /// Bounds on every file.
        public var limits = Image.Limits()

        public init() {}

        func check() throws {
            guard (1 ... 4096).contains(side) else { throw MetaCoreError.argument("the image side must be between 1 and 4096 pixels, got \(side)") }
            guard channels == 1 || channels == 3 else { throw MetaCoreError.argument("images have 1 (gray) or 3 (RGB) channels, not \(channels)") }
            guard classSplit.count == 3, classSplit.allSatisfy({ $0 >= 0 }), classSplit.reduce(0, +) == 100, classSplit[0] > 0 else {
                throw MetaCoreError.argument("the class split is three percentages (train, validation, test) that add up to 100, train above 0; got \(classSplit)")
            }
        }
    }

    /// One class: its name, its split, and its images' indices.
    public struct ImageClass: Sendable, Hashable {
        public let name: String
        public let split: Split
        public let images: Range<Int>
    }

    public let side: Int
    public let channels: Int
    public let classes: [ImageClass]
    /// Per-channel mean and standard deviation of the training classes' samples, in [0, 1] (all classes'
    /// if there are no training ones): the default input normalisation.
    public let mean: [Float], standardDeviation: [Float]
    /// The files left out with ``Settings/skipBadImages``, each with why.
    public let skipped: [String]
    /// The layout the classes were read from (never `.auto`).
    public let layout: Layout
    /// How the images were made square, and whether they were inverted.
    public let square: Image.SquareMode, inverted: Bool
    /// `[images, side, side, channels]` samples.
    let storage: PixelStorage
    let pixelOffset: Int

    public var imageCount: Int { classes.last?.images.upperBound ?? 0 }
    public var imageSize: Int { side * side * channels }

    /// The indices into ``classes`` of the classes of `split`.
    public func classes(in split: Split) -> [Int] { classes.indices.filter { classes[$0].split == split } }

    /// Image `index` (`side` x `side`, ``channels`` channels).
    public func image(_ index: Int) -> Image {
        precondition((0 ..< imageCount).contains(index), "image \(index) of \(imageCount)")
        return withPixels(of: index) { try! Image(width: side, height: side, channels: channels, pixels: Array($0)) }
    }

    /// Calls `body` with the samples of image `index`, without copying them.
    func withPixels<R>(of index: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let start = pixelOffset + index * imageSize
        return try body(UnsafeBufferPointer(rebasing: storage.bytes.bindMemory(to: UInt8.self)[start ..< start + imageSize]))
    }
}

// MARK: - Finding the images

extension ImageFolder {
    /// A class as found on disk, before decoding.
    struct FoundClass {
        let name: String
        let split: Split
        let files: [URL]
    }

    /// The classes of the dataset at `root` in `layout` (`.auto`: the one the files have), and that layout.
    static func find(_ root: URL, settings: Settings) throws -> (classes: [FoundClass], layout: Layout, sources: [URL]) {
        let layout = settings.layout == .auto ? try detect(root) : settings.layout
        switch layout {
        case .auto: preconditionFailure("detect() never answers auto")
        case .splitFolders:
            var classes: [FoundClass] = [], sources: [URL] = []
            for split in Split.allCases {
                let names = split == .validation ? ["val", "validation"] : [split.rawValue]
                guard let folder = names.map({ root.appendingPathComponent($0) }).first(where: isDirectory) else { continue }
                sources.append(folder)
                classes += try classFolders(in: folder).map { FoundClass(name: $0.lastPathComponent, split: split, files: try imageFiles(in: $0)) }
            }
            guard classes.contains(where: { $0.split == .train }) else {
                throw MetaCoreError(.missingData, "\(root.path) has no train/ folder of class folders (the split-folders layout: ROOT/train/CLASS/*, ROOT/val/CLASS/*, ROOT/test/CLASS/*)")
            }
            return (classes, layout, sources)
        case .miniImageNet:
            let images = root.appendingPathComponent("images")
            var classes: [FoundClass] = [], sources = [images]
            for split in Split.allCases {
                let csv = root.appendingPathComponent("\(split.rawValue).csv")
                guard FileManager.default.fileExists(atPath: csv.path) else {
                    throw MetaCoreError(.missingData, "\(root.path) has no \(csv.lastPathComponent): mini-ImageNet's layout is images/ with train.csv, val.csv and test.csv (Ravi & Larochelle)")
                }
                sources.append(csv)
                classes += try readCSV(csv, images: images).map { FoundClass(name: $0.label, split: split, files: $0.files) }
            }
            return (classes, layout, sources)
        case .cub:
            let images = root.appendingPathComponent("images")
            let folders = try classFolders(in: images)
            guard folders.count == 200 else {
                throw MetaCoreError(.corruptData, "\(images.path) holds \(folders.count) class folders; CUB-200-2011 has 200 (NNN.Name), which its few-shot split divides")
            }
            let classes = try folders.enumerated().compactMap { i, folder -> FoundClass? in
                let split: Split? = i % 2 == 0 ? .train : i % 4 == 1 ? .validation : i % 4 == 3 ? .test : nil
                return try split.map { FoundClass(name: folder.lastPathComponent, split: $0, files: try imageFiles(in: folder)) }
            }
            return (classes, layout, [images])
        case .classFolders:
            let folders = try classFolders(in: root)
            guard !folders.isEmpty else {
                throw MetaCoreError(.missingData, "\(root.path) holds no class folders: expected ROOT/CLASS/*.jpg|png (or a mini-ImageNet, CUB or split-folders layout)")
            }
            let splitFiles = Split.allCases.map { root.appendingPathComponent("\($0.rawValue).txt") }
            var splits: [String: Split] = [:], sources = [root]
            if splitFiles.contains(where: { FileManager.default.fileExists(atPath: $0.path) }) {
                for (split, file) in zip(Split.allCases, splitFiles) where FileManager.default.fileExists(atPath: file.path) {
                    sources.append(file)
                    for name in try readLines(file) {
                        guard splits.updateValue(split, forKey: name) == nil else {
                            throw MetaCoreError(.corruptData, "\(file.path): class '\(name)' is listed in more than one split file")
                        }
                    }
                }
                let names = Set(folders.map(\.lastPathComponent))
                if let missing = splits.keys.sorted().first(where: { !names.contains($0) }) {
                    throw MetaCoreError(.missingData, "the split files name class '\(missing)', which has no folder in \(root.path)")
                }
            } else {
                // A seeded shuffle, so that a split is a pure function of the class names and the seed.
                var order = Array(folders.indices), random = RandomSource(seed: settings.classSplitSeed)
                order.shuffle(using: &random)
                let train = max(1, folders.count * settings.classSplit[0] / 100)
                let validation = min(folders.count - train, folders.count * settings.classSplit[1] / 100)
                for (rank, index) in order.enumerated() {
                    splits[folders[index].lastPathComponent] = rank < train ? .train : rank < train + validation ? .validation : .test
                }
            }
            let classes = try folders.compactMap { folder -> FoundClass? in
                try splits[folder.lastPathComponent].map { FoundClass(name: folder.lastPathComponent, split: $0, files: try imageFiles(in: folder)) }
            }
            return (classes, layout, sources)
        }
    }

    /// The layout of the files at `root`.
    static func detect(_ root: URL) throws -> Layout {
        guard isDirectory(root) else { throw MetaCoreError(.missingData, "no image dataset at \(root.path): it is not a folder") }
        let has = { FileManager.default.fileExists(atPath: root.appendingPathComponent($0).path) }
        if isDirectory(root.appendingPathComponent("images")) && has("train.csv") { return .miniImageNet }
        if isDirectory(root.appendingPathComponent("images")) && has("classes.txt") && has("image_class_labels.txt") { return .cub }
        if isDirectory(root.appendingPathComponent("train")) && (has("test") || has("val") || has("validation")) { return .splitFolders }
        return .classFolders
    }

    static func isDirectory(_ url: URL) -> Bool { FolderListing.isDirectory(url) }

    /// The folders in `url` (hidden ones aside), in name order: the classes of a class-folder layout.
    public static func classFolders(in url: URL) throws -> [URL] { try FolderListing.subfolders(in: url) }

    /// The PNG and JPEG files in `url` (by extension, any case; hidden ones aside), in name order.
    public static func imageFiles(in url: URL) throws -> [URL] {
        try FolderListing.files(in: url) { Image.Format.of(fileName: $0) != nil }
    }

    static func checkName(_ name: String, in place: String) throws { try FolderListing.checkName(name, in: place) }

    /// The non-empty lines of a small text file (split lists, CSVs), trimmed; bounded at 64 MB.
    static func readLines(_ url: URL) throws -> [String] {
        let bytes: [UInt8]
        do { bytes = try readBounded(url, maximumBytes: 64 << 20) } catch let error as MetaCoreError {
            throw MetaCoreError(error.kind, "\(url.path): \(error.message)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw MetaCoreError(.corruptData, "\(url.path) is not UTF-8 text") }
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// A mini-ImageNet CSV: its classes in order of first appearance, each with its files in the CSV's order.
    static func readCSV(_ csv: URL, images: URL) throws -> [(label: String, files: [URL])] {
        let lines = try readLines(csv)
        guard let header = lines.first, header.replacingOccurrences(of: " ", with: "") == "filename,label" else {
            throw MetaCoreError(.corruptData, "\(csv.path) does not start with the header 'filename,label'")
        }
        var order: [String] = [], files: [String: [URL]] = [:]
        for (number, line) in lines.enumerated().dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 2, !fields[0].isEmpty, !fields[1].isEmpty else {
                throw MetaCoreError(.corruptData, "\(csv.path) line \(number + 1): expected 'filename,label', got '\(line)'")
            }
            guard !fields[0].contains("/"), fields[0] != "..", !fields[0].hasPrefix(".") else {
                throw MetaCoreError(.corruptData, "\(csv.path) line \(number + 1): '\(fields[0])' is not a file name in images/")
            }
            try checkName(fields[0], in: csv.path); try checkName(fields[1], in: csv.path)
            if files[fields[1]] == nil { order.append(fields[1]) }
            files[fields[1], default: []].append(images.appendingPathComponent(fields[0]))
        }
        return order.map { ($0, files[$0]!) }
    }
}

// MARK: - Loading

extension ImageFolder: Dataset {
    public static let name = "images"
    public static let layout = "a folder of images: ROOT/CLASS/*.jpg|png (split by train.txt/val.txt/test.txt or a seeded shuffle), ROOT/{train,val,test}/CLASS/*, mini-ImageNet's images/ with train.csv, val.csv, test.csv, or CUB_200_2011"
    public static var defaultSettings: Settings { Settings() }

    /// The settings the `images` task family's options describe (`--image-size`, `--color`, …).
    public static func settings(_ options: ResolvedOptions) throws -> Settings {
        var settings = Settings()
        settings.side = options.int("image-size")!
        settings.channels = options.string("color") == "gray" ? 1 : 3
        settings.square = Image.SquareMode(rawValue: options.string("square")!)!
        settings.invert = options.bool("invert")!
        settings.layout = ImageFolder.Layout(rawValue: options.string("layout")!)!
        settings.classSplit = options.ints("class-split")!
        settings.skipBadImages = options.bool("skip-bad-images")!
        try settings.check()
        return settings
    }

    public static func load(from path: String, settings: Settings, context: DatasetLoading) throws -> (ImageFolder, CacheStatus) {
        try settings.check()
        let root = URL(fileURLWithPath: path).standardizedFileURL
        guard isDirectory(root) else {
            throw MetaCoreError(.missingData, "no image dataset at \(root.path): expected \(layout)")
        }
        let (found, layout, sources) = try find(root, settings: settings)
        guard let cacheDirectory = context.cacheDirectory else {
            return (try decode(found, layout: layout, settings: settings, context: context), .disabled)
        }
        let fingerprint = try Self.fingerprint(found, sources: sources, settings: settings)
        let cache = ImageFolderCache(directory: cacheDirectory, root: root.path, settings: settings)
        return try throughCache(cache.url, in: cacheDirectory, read: { cache.read(fingerprint: fingerprint) },
                                decode: { try decode(found, layout: layout, settings: settings, context: context) },
                                write: { try cache.write($0, fingerprint: fingerprint) })
    }

    /// What the cache compares: every image's path, size and modification time, the split files', and the
    /// settings — a file added, removed, renamed or rewritten changes it — hashed (FNV-1a, 64 bits).
    static func fingerprint(_ classes: [FoundClass], sources: [URL], settings: Settings) throws -> String {
        var hash = fnv1a("")
        func add(_ text: String) { hash = fnv1a(text, continuing: hash) }
        func stamp(_ url: URL) -> String {
            var status = stat()
            guard stat(url.path, &status) == 0 else { return "\(url.path) missing" }
            return "\(url.path) \(status.st_size) \(status.st_mtim.tv_sec).\(status.st_mtim.tv_nsec)"
        }
        add("settings \(settings.side) \(settings.channels) \(settings.square.rawValue) \(settings.invert) \(settings.layout.rawValue) \(settings.classSplit) \(settings.classSplitSeed) \(settings.skipBadImages) \(settings.limits)\n")
        for source in sources where !isDirectory(source) { add(stamp(source) + "\n") }
        for found in classes {
            add("class \(found.split.rawValue) \(found.name) \(found.files.count)\n")
            for file in found.files { add(stamp(file) + "\n") }
        }
        return String(hash, radix: 16) + " \(classes.count) classes \(classes.map(\.files.count).reduce(0, +)) files"
    }

    /// Decodes every image of `found` on `context.threads` threads, with a progress line every few seconds.
    static func decode(_ found: [FoundClass], layout: Layout, settings: Settings, context: DatasetLoading) throws -> ImageFolder {
        let files = found.flatMap(\.files), size = settings.side * settings.side * settings.channels
        guard !files.isEmpty else { throw MetaCoreError(.missingData, "the image dataset holds no .png or .jpg files") }
        let preprocessing = ImagePreprocessing(side: settings.side, channels: settings.channels, square: settings.square, invert: settings.invert)
        let failures = Mutex<[Int: String]>([:])
        let next = Atomic<Int>(0), done = Atomic<Int>(0)
        let clock = ContinuousClock(), start = clock.now
        let lastReport = Mutex(start)
        let storage = PixelStorage.filled(count: files.count * size) { buffer in
            // Each thread writes the images it takes, and no other.
            nonisolated(unsafe) let pixels = buffer.bindMemory(to: UInt8.self)
            DispatchQueue.concurrentPerform(iterations: min(context.threads, files.count)) { _ in
                while true {
                    let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard index < files.count else { return }
                    do {
                        let image = try preprocessing.squared(Image(contentsOf: files[index], channels: settings.channels, limits: settings.limits))
                        image.pixels.withUnsafeBufferPointer { source in
                            _ = UnsafeMutableBufferPointer(rebasing: pixels[index * size ..< (index + 1) * size]).update(fromContentsOf: source)
                        }
                    } catch {
                        failures.withLock { $0[index] = (error as? MetaCoreError)?.message ?? "\(files[index].path): \(describe(error))" }
                    }
                    let finished = done.wrappingAdd(1, ordering: .relaxed).newValue
                    if let progress = context.progress {
                        let now = clock.now
                        let due = lastReport.withLock { last in
                            guard now - last >= .seconds(5) else { return false }
                            last = now
                            return true
                        }
                        if due {
                            let seconds = (now - start).seconds
                            progress("images: decoded \(finished) of \(files.count) (\(100 * finished / files.count)%) in \(Int(seconds)) s, \(Int(Double(finished) / max(seconds, 1e-9))) a second")
                        }
                    }
                }
            }
        }
        let failed = failures.withLock { $0 }
        if !failed.isEmpty && !settings.skipBadImages {
            let first = failed.keys.min()!
            throw MetaCoreError(.corruptData, "\(failed[first]!)\(failed.count > 1 ? " (and \(failed.count - 1) more files that do not decode)" : ""); pass --skip-bad-images to leave such files out")
        }
        // Skipped files leave gaps: the good images move down over them, in order.
        var classes: [ImageClass] = [], kept = 0, fileIndex = 0
        let pixels = UnsafeMutableRawBufferPointer(mutating: storage.bytes)
        for found in found {
            let first = kept
            for _ in found.files {
                defer { fileIndex += 1 }
                guard failed[fileIndex] == nil else { continue }
                if kept != fileIndex {
                    pixels.baseAddress!.advanced(by: kept * size).copyMemory(from: pixels.baseAddress!.advanced(by: fileIndex * size), byteCount: size)
                }
                kept += 1
            }
            guard kept > first else {
                throw MetaCoreError(.missingData, "class '\(found.name)' (\(found.split.rawValue)) has no image that decodes")
            }
            classes.append(ImageClass(name: found.name, split: found.split, images: first ..< kept))
        }
        let skipped = failed.keys.sorted().map { failed[$0]! }
        let statistics = channelStatistics(UnsafeRawBufferPointer(rebasing: storage.bytes[..<(kept * size)]), classes: classes,
                                           imageSize: size, channels: settings.channels)
        return ImageFolder(side: settings.side, channels: settings.channels, classes: classes, mean: statistics.mean,
                           standardDeviation: statistics.deviation, skipped: skipped, layout: layout, square: settings.square,
                           inverted: settings.invert, storage: storage, pixelOffset: 0)
    }

    /// Per-channel mean and standard deviation in [0, 1] of the training classes' samples (all, if none train),
    /// summed exactly in integers.
    static func channelStatistics(_ pixels: UnsafeRawBufferPointer, classes: [ImageClass], imageSize: Int, channels: Int) -> (mean: [Float], deviation: [Float]) {
        let chosen = classes.contains { $0.split == .train } ? classes.filter { $0.split == .train } : classes
        var sums = [UInt64](repeating: 0, count: channels), squares = sums, count: UInt64 = 0
        let samples = pixels.bindMemory(to: UInt8.self)
        for imageClass in chosen {
            let range = imageClass.images.lowerBound * imageSize ..< imageClass.images.upperBound * imageSize
            var index = range.lowerBound
            while index < range.upperBound {
                for c in 0 ..< channels {
                    let v = UInt64(samples[index + c])
                    sums[c] += v; squares[c] += v * v
                }
                index += channels
            }
            count += UInt64(range.count / channels)
        }
        let n = Double(max(count, 1))
        let mean = sums.map { Double($0) / n / 255 }
        let deviation = zip(squares, mean).map { square, m in
            max(1e-6, (max(0, Double(square) / n / (255 * 255) - m * m)).squareRoot())
        }
        return (mean.map(Float.init), deviation.map(Float.init))
    }

    public var summary: String {
        let counts = Split.allCases.map { split in
            let chosen = classes.filter { $0.split == split }
            return "\(chosen.count) \(split == .validation ? "validation" : split.rawValue) (\(chosen.map(\.images.count).reduce(0, +)) images)"
        }
        let means = mean.map { String(format: "%.3f", $0) }.joined(separator: ", "), deviations = standardDeviation.map { String(format: "%.3f", $0) }.joined(separator: ", ")
        return "images (\(layout.rawValue)): \(classes.count) classes, \(counts.joined(separator: ", ")); \(side)x\(side) \(channels == 3 ? "RGB" : "gray"); training mean [\(means)], standard deviation [\(deviations)]"
            + (skipped.isEmpty ? "" : "; \(skipped.count) files skipped (\(skipped[0])\(skipped.count > 1 ? ", …" : ""))")
    }
}
