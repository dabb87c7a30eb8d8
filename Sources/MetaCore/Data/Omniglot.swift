import Foundation

/// The Omniglot dataset (Lake et al. 2015): 1623 handwritten characters from 50 alphabets, 20 drawings
/// each, preprocessed as the few-shot literature does — inverted so ink is 1, area-resized from 105x105 to
/// `side` x `side` (28 by default), both parts merged.
///
/// ```swift
/// let (omniglot, _) = try Omniglot.load(from: "data/omniglot")
/// let split = try omniglot.split(seed: 0)                 // 1200 meta-training / 423 meta-test characters
/// let tasks = try OmniglotTasks(omniglot, characters: split.train, rotations: [0, 1, 2, 3],
///                               ways: 5, shots: 1, queries: 15)
/// ```
///
/// `load` reads the layout users download from github.com/brendenlake/omniglot: `images_background` and
/// `images_evaluation`, each `ALPHABET/characterNN/*.png`, as folders or as the two zip files, and keeps a
/// checksummed cache of the preprocessed pixels (see `OmniglotCache`) so later runs start at once.
public struct Omniglot: Sendable {
    /// The two parts of the download: 30 "background" alphabets (964 characters) and 20 "evaluation" alphabets (659).
    public enum Part: String, Sendable, CaseIterable, Codable {
        case background, evaluation
        /// The folder (or, with ".zip", the archive) the part is distributed as.
        public var directoryName: String { "images_\(rawValue)" }
    }

    /// One character class.
    public struct CharacterClass: Sendable, Hashable {
        public let part: Part
        public let alphabet: String
        public let name: String
        /// "background/Latin/character01".
        public var path: String { "\(part.rawValue)/\(alphabet)/\(name)" }
    }

    public static let drawingsPerCharacter = 20
    /// Bounds on one drawing's file: Omniglot's are 105x105 PNGs of a few hundred bytes, so anything past these
    /// is corrupt or hostile and is refused before it is allocated.
    static let limits = Image.Limits(maximumBytes: 4 << 20, maximumPixels: 1024 * 1024)

    /// Side of the square images after resizing.
    public let side: Int
    /// Every character, ordered by part, alphabet and name.
    public let characters: [CharacterClass]
    /// `[characters, drawings, side, side]` gray levels, ink 255 and background 0.
    public let pixels: [UInt8]

    init(side: Int, characters: [CharacterClass], pixels: [UInt8]) {
        precondition(pixels.count == characters.count * Self.drawingsPerCharacter * side * side)
        self.side = side
        self.characters = characters
        self.pixels = pixels
    }

    /// The pixels of drawing `drawing` of character `character`: `side * side` bytes, row-major.
    public func image(character: Int, drawing: Int) -> ArraySlice<UInt8> {
        let size = side * side, start = (character * Self.drawingsPerCharacter + drawing) * size
        return pixels[start ..< start + size]
    }

    /// Indices of the characters of `part`.
    public func characters(in part: Part) -> [Int] { characters.indices.filter { characters[$0].part == part } }

    /// A seeded split of the characters into `trainCount` for meta-training and the rest for meta-testing
    /// (Vinyals et al. 2016 and Finn et al. 2017 use 1200 / 423 of the merged set). The characters are
    /// shuffled with ``RandomSource`` seeded by `seed`; the first `trainCount` are the training ones. Both
    /// lists are returned in dataset order.
    public func split(trainCount: Int = 1200, seed: UInt64 = 0) throws -> (train: [Int], test: [Int]) {
        guard trainCount > 0, trainCount < characters.count else {
            throw MetaCoreError.argument("the training split needs between 1 and \(characters.count - 1) characters, got \(trainCount)")
        }
        var order = Array(characters.indices), random = RandomSource(seed: seed)
        order.shuffle(using: &random)
        return (order[..<trainCount].sorted(), order[trainCount...].sorted())
    }
}

// MARK: - Reading the download

extension Omniglot {
    /// Where a dataset's cache goes by default: `$XDG_CACHE_HOME/metacore`, else `~/.cache/metacore`.
    public static var defaultCacheDirectory: URL {
        if let xdg = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("metacore")
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/metacore")
    }

    public typealias CacheStatus = MetaCore.CacheStatus

    /// Loads Omniglot from `path` (the directory holding `images_background` and `images_evaluation`, as folders
    /// or zip files), through a cache in `cacheDirectory` (`nil`: no cache). A cache that is corrupt or was
    /// built from different files is rebuilt, never used.
    public static func load(from path: String, side: Int = 28,
                            cacheDirectory: URL? = Omniglot.defaultCacheDirectory) throws -> (Omniglot, CacheStatus) {
        let sources = try Part.allCases.map { try Source(root: path, part: $0) }
        guard let cacheDirectory else { return (try decode(sources, side: side), .disabled) }
        let cache = OmniglotCache(directory: cacheDirectory, datasetPath: sources[0].root, side: side)
        let fingerprint = try sources.map { try $0.fingerprint() }.joined(separator: "\n")
        return try throughCache(cache.url, in: cacheDirectory, read: { cache.read(fingerprint: fingerprint) },
                                decode: { try decode(sources, side: side) }, write: { try cache.write($0, fingerprint: fingerprint) })
    }

    /// Decodes every PNG of `sources` (no cache).
    static func decode(_ sources: [Source], side: Int) throws -> Omniglot {
        guard side > 0 else { throw MetaCoreError.argument("image side must be positive, got \(side)") }
        var characters: [CharacterClass] = [], pixels: [UInt8] = []
        let size = side * side
        for source in sources {
            for (character, drawings) in try source.characters() {
                characters.append(character)
                let start = pixels.count
                pixels.append(contentsOf: repeatElement(0, count: drawings.count * size))
                for (d, drawing) in drawings.enumerated() {
                    let image: Image
                    do { image = try Image(decoding: source.read(drawing), channels: 1, limits: Self.limits) } catch let error as MetaCoreError {
                        throw MetaCoreError(error.kind, "\(source.describe(drawing)): \(error.message)")
                    }
                    guard image.height >= side, image.width >= side else {
                        throw MetaCoreError(.corruptData, "\(source.describe(drawing)) is \(image.width)x\(image.height), smaller than \(side)x\(side)")
                    }
                    try pixels.withUnsafeMutableBufferPointer { all in
                        let offset = start + d * size
                        try image.resize(into: UnsafeMutableBufferPointer(rebasing: all[offset ..< offset + size]), height: side, width: side,
                                         inverting: true)
                    }
                }
            }
        }
        return Omniglot(side: side, characters: characters, pixels: pixels)
    }

    /// One part of the download, as a folder or a zip archive.
    struct Source {
        let root: String, part: Part
        enum Storage { case folder(URL), zip(ZipArchive) }
        let storage: Storage
        /// A drawing: a file path, or an entry index of the archive.
        enum Drawing { case file(URL), entry(Int, String) }

        init(root: String, part: Part) throws {
            let rootURL = URL(fileURLWithPath: root).standardizedFileURL
            self.root = rootURL.path
            self.part = part
            let folder = rootURL.appendingPathComponent(part.directoryName), zip = folder.appendingPathExtension("zip")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue {
                storage = .folder(folder)
            } else if FileManager.default.fileExists(atPath: zip.path) {
                storage = .zip(try ZipArchive(path: zip.path))
            } else {
                throw MetaCoreError(.missingData, "no Omniglot \(part.rawValue) set in \(rootURL.path): expected a folder \(part.directoryName)/ (ALPHABET/characterNN/*.png) or \(part.directoryName).zip, as downloaded from github.com/brendenlake/omniglot")
            }
        }

        /// What the cache compares: the files' identity (names, sizes, modification times) without reading them.
        func fingerprint() throws -> String {
            switch storage {
            case .zip(let archive):
                let attributes = try FileManager.default.attributesOfItem(atPath: archive.path)
                let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
                let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                return "\(archive.path) zip \(size) bytes, modified \(modified)"
            case .folder(let folder):
                // Every drawing's name, size and modification time: a file added, removed, renamed or rewritten
                // in place changes the fingerprint.
                var lines = ["\(folder.path) folder"]
                for alphabet in try subfolders(folder) {
                    for character in try subfolders(alphabet) {
                        for file in try drawingFiles(character) {
                            let attributes = try FileManager.default.attributesOfItem(atPath: character.appendingPathComponent(file).path)
                            let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
                            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                            lines.append("\(alphabet.lastPathComponent)/\(character.lastPathComponent)/\(file) \(size) \(modified)")
                        }
                    }
                }
                return lines.joined(separator: "\n")
            }
        }

        /// The characters of this part in name order, each with its drawings in name order; throws unless every
        /// character has exactly ``drawingsPerCharacter`` drawings.
        func characters() throws -> [(CharacterClass, [Drawing])] {
            var found: [String: [String: [(name: String, drawing: Drawing)]]] = [:]
            switch storage {
            case .folder(let folder):
                for alphabet in try subfolders(folder) {
                    let characters = try subfolders(alphabet)
                    guard !characters.isEmpty else {
                        throw MetaCoreError(.corruptData, "\(alphabet.path) holds no character folders: every Omniglot alphabet has some")
                    }
                    for character in characters {
                        let files = try drawingFiles(character)
                        found[alphabet.lastPathComponent, default: [:]][character.lastPathComponent, default: []] +=
                            files.map { ($0, .file(character.appendingPathComponent($0))) }
                    }
                }
            case .zip(let archive):
                for (index, name) in archive.names.enumerated() where name.hasSuffix(".png") {
                    let components = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
                    guard components.count == 4, components[0] == part.directoryName else { continue }
                    for name in components[1 ... 3] { try Self.checkName(name, in: URL(fileURLWithPath: archive.path)) }
                    found[components[1], default: [:]][components[2], default: []].append((components[3], .entry(index, name)))
                }
            }
            guard !found.isEmpty else {
                throw MetaCoreError(.corruptData, "\(location) holds no drawings: expected \(part.directoryName)/ALPHABET/characterNN/*.png")
            }
            var result: [(CharacterClass, [Drawing])] = []
            for alphabet in found.keys.sorted() {
                for (name, drawings) in found[alphabet]!.sorted(by: { $0.key < $1.key }) {
                    guard drawings.count == drawingsPerCharacter else {
                        throw MetaCoreError(.corruptData, "\(location): \(alphabet)/\(name) has \(drawings.count) drawings; every Omniglot character has \(drawingsPerCharacter)")
                    }
                    result.append((CharacterClass(part: part, alphabet: alphabet, name: name), drawings.sorted { $0.name < $1.name }.map(\.drawing)))
                }
            }
            return result
        }

        func read(_ drawing: Drawing) throws -> [UInt8] {
            switch (drawing, storage) {
            case (.file(let url), _):
                do { return try readBounded(url, maximumBytes: Omniglot.limits.maximumBytes) } catch let error as MetaCoreError {
                    throw MetaCoreError(error.kind, "\(url.path): \(error.message)")
                }
            case (.entry(let index, _), .zip(let archive)): return try archive.read(index, maximumSize: Omniglot.limits.maximumBytes)
            case (.entry, .folder): preconditionFailure("a zip entry of a folder source")
            }
        }

        func describe(_ drawing: Drawing) -> String {
            switch drawing {
            case .file(let url): return url.path
            case .entry(_, let name): return "\(location) entry \(name)"
            }
        }

        var location: String {
            switch storage {
            case .folder(let url): return url.path
            case .zip(let archive): return archive.path
            }
        }

        private func subfolders(_ url: URL) throws -> [URL] { try FolderListing.subfolders(in: url) }

        /// The PNG files in a character folder, in name order.
        private func drawingFiles(_ character: URL) throws -> [String] {
            let files = try FolderListing.names(in: character).filter { $0.hasSuffix(".png") }
            for name in files { try Self.checkName(name, in: character) }
            return files
        }

        static func checkName(_ name: String, in folder: URL) throws { try FolderListing.checkName(name, in: folder.path) }
    }
}

// MARK: - Model inputs

extension Omniglot {
    /// One drawing of a character, rotated by `quarterTurns` × 90° counter-clockwise.
    public struct Drawing: Sendable, Hashable {
        public let character: Int, drawing: Int, quarterTurns: Int
        public init(character: Int, drawing: Int, quarterTurns: Int = 0) {
            self.character = character; self.drawing = drawing; self.quarterTurns = quarterTurns
        }
    }

    /// A classification batch of `drawings`, in order, as `[n, 1, side, side]` inputs in [0, 1] (ink 1).
    public func batch(_ drawings: [Drawing], labels: [Int32]) throws -> Batch {
        let size = side * side
        var inputs = [Float](repeating: 0, count: drawings.count * size)
        pixels.withUnsafeBufferPointer { all in
            inputs.withUnsafeMutableBufferPointer { out in
                for (i, d) in drawings.enumerated() {
                    let start = (d.character * Self.drawingsPerCharacter + d.drawing) * size
                    Self.rotate(UnsafeBufferPointer(rebasing: all[start ..< start + size]), side: side,
                                quarterTurns: d.quarterTurns, into: out.baseAddress! + i * size)
                }
            }
        }
        return try Batch(inputs: Tensor(shape: [drawings.count, 1, side, side], scalars: inputs), labels: labels)
    }

    /// `pixels` [side, side] rotated counter-clockwise by `quarterTurns` × 90°, as floats in [0, 1].
    static func rotate(_ pixels: UnsafeBufferPointer<UInt8>, side s: Int, quarterTurns: Int, into out: UnsafeMutablePointer<Float>) {
        for y in 0 ..< s {
            for x in 0 ..< s {
                let source: Int
                switch quarterTurns & 3 {
                case 0: source = y * s + x
                case 1: source = x * s + (s - 1 - y)
                case 2: source = (s - 1 - y) * s + (s - 1 - x)
                default: source = (s - 1 - x) * s + y
                }
                out[y * s + x] = Float(pixels[source]) / 255
            }
        }
    }
}

extension Omniglot: Dataset {
    public static let name = "omniglot"
    public static let layout = "the directory with images_background and images_evaluation, folders or .zip files"

    /// What decides the loaded images besides the path: their side, in pixels (each side is cached on its own).
    public struct Settings: Hashable, Sendable {
        public var side: Int
        public init(side: Int = 28) { self.side = side }
    }

    public static let defaultSettings = Settings()

    /// `--image-size`, an option of the task families over Omniglot: 28 as Vinyals et al. and Finn et al.,
    /// 84 as OML (Javed & White 2019). The drawings are 105x105, so no side above that.
    static let imageSizeOption = OptionSpec("image-size", .int(8 ... 105), default: .int(28),
                                            help: "side of the square images the 105x105 drawings are resized to, in pixels")

    public static func settings(_ options: ResolvedOptions) throws -> Settings {
        Settings(side: options.int(imageSizeOption.name) ?? defaultSettings.side)
    }

    public func mismatch(with settings: Settings) -> String? {
        side == settings.side ? nil : "has \(side)x\(side) images, but the run asks for --image-size \(settings.side)"
    }

    public static func load(from path: String, settings: Settings, context: DatasetLoading) throws -> (Omniglot, CacheStatus) {
        try load(from: path, side: settings.side, cacheDirectory: context.cacheDirectory)
    }

    public var summary: String {
        let background = characters(in: .background).count
        let alphabets = Set(characters.map { "\($0.part)/\($0.alphabet)" }).count
        return "Omniglot: \(characters.count) characters (\(background) background, \(characters.count - background) evaluation) from \(alphabets) alphabets, \(Self.drawingsPerCharacter) drawings each, \(side)x\(side)"
    }
}
