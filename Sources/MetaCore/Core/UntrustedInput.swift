import Foundation

/// Every parser MetaCore runs on outside bytes, on bytes in memory: checkpoints (safetensors, and the
/// training state they restore), the dataset caches, PNG and JPEG images and zip archives. Each returns normally or
/// throws a ``MetaCoreError``; anything else — a crash, a trap, a hang, an allocation the input asked for — is a
/// bug. The fuzz targets (`make fuzz`) drive these.
public enum UntrustedInput {
    /// Parses a safetensors file.
    public static func safetensors(_ bytes: Data) throws {
        _ = try SafeTensors(decoding: bytes, source: "input")
    }

    /// Parses a training checkpoint and restores its trainer (synthetic task families only: no dataset is read).
    public static func checkpoint(_ bytes: Data) throws {
        let file = try SafeTensors(decoding: bytes, source: "input")
        _ = try TrainingCheckpoint.trainingSeconds(of: file)
        _ = try TrainingCheckpoint.restore(file)
    }

    /// Decodes an Omniglot cache built from files with fingerprint `fingerprint`. With `fixChecksum`, the
    /// trailing CRC-32 is first set to the one the bytes have, so that a fuzzer reaches what the check guards.
    public static func omniglotCache(_ bytes: [UInt8], fingerprint: String = "fuzz", fixChecksum: Bool = true) throws {
        let bytes = fixChecksum ? withTrailingChecksum(bytes) : bytes
        do { _ = try OmniglotCache(directory: URL(fileURLWithPath: "/nonexistent"), datasetPath: "fuzz", side: 28).decode(bytes, fingerprint: fingerprint) }
        catch let problem as OmniglotCache.Problem { throw MetaCoreError(.corruptData, problem.message) }
    }

    /// A valid Omniglot cache of two made-up characters, with fingerprint "fuzz" (a fuzzer's seed).
    public static func sampleOmniglotCache() -> [UInt8] {
        let characters = [Omniglot.CharacterClass(part: .background, alphabet: "Latin", name: "character01"),
                          Omniglot.CharacterClass(part: .evaluation, alphabet: "Greek", name: "character02")]
        let pixels = (0 ..< 2 * Omniglot.drawingsPerCharacter * 28 * 28).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 24) }
        return OmniglotCache(directory: URL(fileURLWithPath: "/nonexistent"), datasetPath: "fuzz", side: 28)
            .encode(Omniglot(side: 28, characters: characters, pixels: pixels), fingerprint: "fuzz")
    }

    /// Decodes an image dataset's cache (8x8 RGB images) built from files with fingerprint `fingerprint`; with
    /// `fixChecksum`, as ``omniglotCache(_:fingerprint:fixChecksum:)``.
    public static func imageCache(_ bytes: [UInt8], fingerprint: String = "fuzz", fixChecksum: Bool = true) throws {
        let bytes = fixChecksum ? withTrailingChecksum(bytes) : bytes
        do { _ = try sampleImageCacheFile.decode(PixelStorage.copying(bytes), fingerprint: fingerprint) }
        catch let problem as ImageFolderCache.Problem { throw MetaCoreError(.corruptData, problem.message) }
    }

    /// A valid image cache of three made-up classes of 8x8 RGB images, with fingerprint "fuzz" (a fuzzer's seed).
    public static func sampleImageCache() throws -> [UInt8] {
        let counts = [2, 1, 3], size = 8 * 8 * 3
        var start = 0, classes: [ImageFolder.ImageClass] = []
        for (i, count) in counts.enumerated() {
            classes.append(ImageFolder.ImageClass(name: "class \(i)", split: ImageFolder.Split.allCases[i], images: start ..< start + count))
            start += count
        }
        let storage = PixelStorage.filled(count: start * size) { buffer in
            for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 24) }
        }
        let dataset = ImageFolder(side: 8, channels: 3, classes: classes, mean: [0.5, 0.4, 0.3], standardDeviation: [0.2, 0.25, 0.3],
                                  skipped: ["bad.jpg: not a PNG or JPEG image"], layout: .classFolders, square: .stretch, inverted: false,
                                  storage: storage, pixelOffset: 0)
        return sampleImageCacheFile.encode(dataset, fingerprint: "fuzz")
    }

    private static var sampleImageCacheFile: ImageFolderCache {
        var settings = ImageFolder.Settings()
        settings.side = 8
        return ImageFolderCache(directory: URL(fileURLWithPath: "/nonexistent"), root: "fuzz", settings: settings)
    }

    /// Decodes a PNG or JPEG as Omniglot's loader does (bounded size, gray), then area-resizes it to 28x28; and
    /// as an image dataset's loader does (bounded size, RGB), then makes an 84x84 centre crop of it.
    public static func image(_ bytes: [UInt8]) throws {
        let gray = try Image(decoding: bytes, channels: 1, limits: Omniglot.limits)
        _ = try gray.resized(height: 28, width: 28, inverting: true)
        let colour = try Image(decoding: bytes, channels: 3, limits: Image.Limits(maximumPixels: 1 << 20))
        _ = try colour.resized(toFit: 84, mode: .centerCrop)
    }

    /// Opens a zip archive (written to `scratch`, a file path), lists it and reads every entry as Omniglot's
    /// loader does (bounded size, CRC checked).
    public static func zip(_ bytes: [UInt8], scratch: URL) throws {
        try Data(bytes).write(to: scratch)
        let archive = try ZipArchive(path: scratch.path)
        for index in archive.names.indices {
            do { _ = try archive.read(index, maximumSize: Omniglot.limits.maximumBytes) } catch let error as MetaCoreError where error.kind == .corruptData {}
        }
    }

    /// `bytes` with their last 4 replaced by the CRC-32 of the rest (the caches' trailer).
    static func withTrailingChecksum(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.count >= 4 else { return bytes }
        var bytes = bytes
        withUnsafeBytes(of: crc32(bytes[..<(bytes.count - 4)]).littleEndian) { bytes.replaceSubrange(bytes.count - 4 ..< bytes.count, with: $0) }
        return bytes
    }
}
