import Foundation

/// The preprocessed Omniglot pixels in one binary file, so that a run after the first starts in a fraction of a
/// second instead of decoding 32,460 PNGs.
///
/// Layout (integers little-endian):
///
/// | bytes | content |
/// | --- | --- |
/// | 8 | magic `MCOMNIGL` |
/// | 4 × 5 | format version, image side, drawings per character, characters, fingerprint length F |
/// | F | fingerprint of the source files (UTF-8): paths, sizes, modification times |
/// | 4 + N | length N, then one `part/alphabet/character` line per character (UTF-8) |
/// | C × D × side² | pixels, uint8, ink 255 |
/// | 4 | CRC-32 of everything above |
///
/// Reading checks the magic, version, side, every length against the file size, the checksum, and the
/// fingerprint against the dataset's current one; any mismatch makes the cache stale or corrupt, and
/// ``Omniglot/load(from:side:cacheDirectory:)`` rebuilds it. Writing is atomic.
struct OmniglotCache {
    static let magic = Array("MCOMNIGL".utf8)
    static let version: UInt32 = 1

    let url: URL
    let side: Int

    /// The cache of the dataset at `datasetPath` at `side` pixels: one file per dataset location and size.
    init(directory: URL, datasetPath: String, side: Int) {
        let hash = fnv1a(datasetPath)
        url = directory.appendingPathComponent("omniglot-\(side)px-\(String(hash, radix: 16)).cache")
        self.side = side
    }

    typealias Problem = CacheProblem

    /// The cached dataset if the file is intact and was built from files with this `fingerprint`.
    func read(fingerprint: String) -> Result<Omniglot, Problem> {
        guard let data = FileManager.default.contents(atPath: url.path) else { return .failure(Problem(message: "no cache at \(url.path) yet")) }
        return Result { try decode([UInt8](data), fingerprint: fingerprint) }.mapError { $0 as? Problem ?? Problem(message: "\($0)") }
    }

    func decode(_ bytes: [UInt8], fingerprint: String) throws -> Omniglot {
        func corrupt(_ what: String) -> Problem { Problem(message: "cache \(url.path) is corrupt (\(what))") }
        var reader = ByteReader(bytes: bytes)
        guard bytes.count >= 8 + 20 + 4 + 4, Array(bytes[0 ..< 8]) == Self.magic else { throw corrupt("not a MetaCore Omniglot cache") }
        let stored = bytes.count - 4
        let checksum = bytes[stored...].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }.littleEndian
        guard crc32(bytes[..<stored]) == checksum else { throw corrupt("checksum mismatch") }
        reader.offset = 8
        let version = reader.uint32(), side = Int(reader.uint32()), drawings = Int(reader.uint32())
        let count = Int(reader.uint32()), fingerprintLength = Int(reader.uint32())
        guard version == Self.version else { throw Problem(message: "cache \(url.path) has format version \(version), this build writes \(Self.version)") }
        guard side == self.side, drawings == Omniglot.drawingsPerCharacter else { throw corrupt("header describes \(drawings) drawings of \(side)px") }
        guard let storedFingerprint = reader.string(fingerprintLength) else { throw corrupt("truncated fingerprint") }
        guard storedFingerprint == fingerprint else { throw Problem(message: "cache \(url.path) is stale: the dataset files changed since it was built") }
        guard reader.remaining >= 4, let names = reader.string(Int(reader.uint32())) else { throw corrupt("truncated names") }
        let lines = names.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        guard lines.count == count else { throw corrupt("\(lines.count) names for \(count) characters") }
        let characters = try lines.map { line -> Omniglot.CharacterClass in
            let parts = line.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, let part = Omniglot.Part(rawValue: parts[0]) else { throw corrupt("bad name '\(line)'") }
            return Omniglot.CharacterClass(part: part, alphabet: parts[1], name: parts[2])
        }
        let pixelCount = count * drawings * side * side
        guard reader.remaining - 4 == pixelCount else { throw corrupt("\(reader.remaining - 4) pixel bytes for \(pixelCount)") }
        return Omniglot(side: side, characters: characters, pixels: Array(bytes[reader.offset ..< reader.offset + pixelCount]))
    }

    func write(_ dataset: Omniglot, fingerprint: String) throws {
        try writeAtomically(Data(encode(dataset, fingerprint: fingerprint)), to: url)
    }

    /// The cache file's bytes.
    func encode(_ dataset: Omniglot, fingerprint: String) -> [UInt8] {
        var bytes = Self.magic
        func append(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        let fingerprintBytes = Array(fingerprint.utf8)
        let names = Array(dataset.characters.map { $0.path + "\n" }.joined().utf8)
        for value in [Self.version, UInt32(dataset.side), UInt32(Omniglot.drawingsPerCharacter), UInt32(dataset.characters.count),
                      UInt32(fingerprintBytes.count)] { append(value) }
        bytes += fingerprintBytes
        append(UInt32(names.count))
        bytes += names
        bytes += dataset.pixels
        append(crc32(bytes))
        return bytes
    }
}

/// Sequential little-endian reads with bounds checks left to the caller's `remaining`.
private struct ByteReader {
    let bytes: [UInt8]
    var offset = 0
    var remaining: Int { bytes.count - offset }

    mutating func uint32() -> UInt32 {
        guard remaining >= 4 else { offset = bytes.count; return 0 }
        defer { offset += 4 }
        return bytes[offset ..< offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }.littleEndian
    }

    mutating func string(_ length: Int) -> String? {
        guard length >= 0, length <= remaining else { return nil }
        defer { offset += length }
        return String(decoding: bytes[offset ..< offset + length], as: UTF8.self)
    }
}
