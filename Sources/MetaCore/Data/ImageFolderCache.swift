import Foundation

/// An image dataset's decoded pixels in one file, memory-mapped by later runs: they start at once, and the
/// pixels are shared with every process that maps the same file.
///
/// Layout (integers little-endian):
///
/// | bytes | content |
/// | --- | --- |
/// | 8 | magic `MCIMGFLD` |
/// | 4 × 9 | format version, side, channels, layout name length, classes, images, fingerprint length F, names length N, skipped length S |
/// | … | layout name, fingerprint (UTF-8) |
/// | N | one `split<TAB>count<TAB>name` line per class (UTF-8) |
/// | S | one line per skipped file (UTF-8) |
/// | 4 × 2 × channels | mean and standard deviation per channel (float32) |
/// | … | zeros up to a multiple of 64 |
/// | images × side² × channels | pixels, `[image, row, column, channel]` |
/// | 4 | CRC-32 of everything above |
///
/// Reading checks the magic, version, every length against the file size, the checksum (one pass over the
/// file), the settings and the fingerprint; any mismatch makes the cache stale or corrupt, and the dataset is
/// decoded again and the cache rewritten — atomically, so a mapping another process holds stays valid.
struct ImageFolderCache {
    static let magic = Array("MCIMGFLD".utf8)
    static let version: UInt32 = 1

    let url: URL
    let settings: ImageFolder.Settings

    init(directory: URL, root: String, settings: ImageFolder.Settings) {
        let hash = fnv1a("\(root)\n\(settings)")   // the path and the settings that shape the pixels
        url = directory.appendingPathComponent("images-\(settings.side)px-\(settings.channels == 3 ? "rgb" : "gray")-\(String(hash, radix: 16)).cache")
        self.settings = settings
    }

    typealias Problem = CacheProblem

    /// The cached dataset if the file is intact and was built from files with this `fingerprint`.
    func read(fingerprint: String) -> Result<ImageFolder, Problem> {
        guard FileManager.default.fileExists(atPath: url.path) else { return .failure(Problem(message: "no cache at \(url.path) yet")) }
        guard let storage = PixelStorage.mapping(url) else { return .failure(Problem(message: "cache \(url.path) cannot be mapped")) }
        return Result { try decode(storage, fingerprint: fingerprint) }.mapError { $0 as? Problem ?? Problem(message: "\($0)") }
    }

    func decode(_ storage: PixelStorage, fingerprint: String) throws -> ImageFolder {
        func corrupt(_ what: String) -> Problem { Problem(message: "cache \(url.path) is corrupt (\(what))") }
        let bytes = storage.bytes
        guard bytes.count >= 8 + 36 + 4, Array(bytes[0 ..< 8]) == Self.magic else { throw corrupt("not a MetaCore image cache") }
        let stored = bytes.count - 4
        guard crc32(UnsafeRawBufferPointer(rebasing: bytes[..<stored])) == bytes.loadUnaligned(fromByteOffset: stored, as: UInt32.self).littleEndian else {
            throw corrupt("checksum mismatch")
        }
        var offset = 8
        func uint32() -> Int {
            defer { offset += 4 }
            return Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
        }
        let version = uint32()
        guard version == Self.version else { throw Problem(message: "cache \(url.path) has format version \(version), this build writes \(Self.version)") }
        let side = uint32(), channels = uint32(), layoutLength = uint32(), classCount = uint32(), imageCount = uint32()
        let fingerprintLength = uint32(), namesLength = uint32(), skippedLength = uint32()
        guard side == settings.side, channels == settings.channels else { throw corrupt("header describes \(side)px images of \(channels) channels") }
        func string(_ length: Int) throws -> String {
            guard length <= stored - offset else { throw corrupt("truncated") }
            defer { offset += length }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + length]), as: UTF8.self)
        }
        guard let layout = ImageFolder.Layout(rawValue: try string(layoutLength)), layout != .auto else { throw corrupt("unknown layout") }
        guard try string(fingerprintLength) == fingerprint else {
            throw Problem(message: "cache \(url.path) is stale: the dataset files changed since it was built")
        }
        let lines = try string(namesLength).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        guard lines.count == classCount else { throw corrupt("\(lines.count) class lines for \(classCount) classes") }
        var classes: [ImageFolder.ImageClass] = [], start = 0
        for line in lines {
            let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, let split = ImageFolder.Split(rawValue: String(fields[0])), let count = Int(fields[1]), count > 0,
                  count <= imageCount - start else { throw corrupt("bad class line '\(line)'") }
            classes.append(ImageFolder.ImageClass(name: String(fields[2]), split: split, images: start ..< start + count))
            start += count
        }
        guard start == imageCount else { throw corrupt("the classes hold \(start) images, the header \(imageCount)") }
        let skipped = try string(skippedLength).split(separator: "\n").map(String.init)
        guard stored - offset >= 8 * channels else { throw corrupt("truncated statistics") }
        var statistics: [Float] = []
        for _ in 0 ..< 2 * channels {
            statistics.append(Float(bitPattern: UInt32(uint32())))
        }
        guard statistics.allSatisfy({ $0.isFinite && $0 >= 0 }), statistics[channels...].allSatisfy({ $0 > 0 }) else {
            throw corrupt("statistics out of range")
        }
        offset = (offset + 63) / 64 * 64
        let (pixelCount, overflow) = imageCount.multipliedReportingOverflow(by: side * side * channels)
        guard !overflow, stored - offset == pixelCount else { throw corrupt("\(stored - offset) pixel bytes for \(imageCount) images") }
        return ImageFolder(side: side, channels: channels, classes: classes, mean: Array(statistics[..<channels]),
                           standardDeviation: Array(statistics[channels...]), skipped: skipped, layout: layout,
                           square: settings.square, inverted: settings.invert, storage: storage, pixelOffset: offset)
    }

    /// Writes `dataset` atomically, streaming its pixels.
    func write(_ dataset: ImageFolder, fingerprint: String) throws {
        let header = self.header(dataset, fingerprint: fingerprint), pixels = dataset.pixelBytes
        let checksum = crc32(pixels, continuing: crc32(header))
        try writeAtomically(to: url) { handle in
            try handle.write(contentsOf: Data(header))
            var start = 0
            while start < pixels.count { // in pieces, so that no copy of the whole is made
                let end = min(pixels.count, start + (64 << 20))
                try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: pixels.baseAddress!.advanced(by: start)),
                                                  count: end - start, deallocator: .none))
                start = end
            }
            try handle.write(contentsOf: withUnsafeBytes(of: checksum.littleEndian) { Data($0) })
        }
    }

    /// The whole file's bytes in memory (small datasets: tests and fuzzing seeds).
    func encode(_ dataset: ImageFolder, fingerprint: String) -> [UInt8] {
        var bytes = header(dataset, fingerprint: fingerprint) + Array(dataset.pixelBytes)
        withUnsafeBytes(of: crc32(bytes).littleEndian) { bytes += $0 }
        return bytes
    }

    /// Everything before the pixels.
    private func header(_ dataset: ImageFolder, fingerprint: String) -> [UInt8] {
        var header = Self.magic
        func append(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) } }
        let layout = Array(dataset.layout.rawValue.utf8), fingerprintBytes = Array(fingerprint.utf8)
        let names = Array(dataset.classes.map { "\($0.split.rawValue)\t\($0.images.count)\t\($0.name)\n" }.joined().utf8)
        let skipped = Array(dataset.skipped.map { $0.replacingOccurrences(of: "\n", with: " ") + "\n" }.joined().utf8)
        for value in [Self.version, UInt32(dataset.side), UInt32(dataset.channels), UInt32(layout.count), UInt32(dataset.classes.count),
                      UInt32(dataset.imageCount), UInt32(fingerprintBytes.count), UInt32(names.count), UInt32(skipped.count)] { append(value) }
        header += layout + fingerprintBytes + names + skipped
        for value in dataset.mean + dataset.standardDeviation { append(value.bitPattern) }
        header += [UInt8](repeating: 0, count: (64 - header.count % 64) % 64)
        return header
    }
}

extension ImageFolder {
    /// Every image's samples, in order.
    var pixelBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage.bytes[pixelOffset ..< pixelOffset + imageCount * imageSize])
    }
}
