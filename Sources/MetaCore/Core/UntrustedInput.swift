import Foundation

/// Every parser MetaCore runs on outside bytes, on bytes in memory: checkpoints (safetensors, and the
/// training state they restore), the Omniglot cache, PNG images and zip archives. Each returns normally or
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
        var bytes = bytes
        if fixChecksum, bytes.count >= 4 {
            let crc = GrayImage.crc32(bytes[..<(bytes.count - 4)])
            withUnsafeBytes(of: crc.littleEndian) { for (i, b) in $0.enumerated() { bytes[bytes.count - 4 + i] = b } }
        }
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

    /// Decodes a PNG as Omniglot's loader does (bounded size), then area-resizes it to 28x28.
    public static func png(_ bytes: [UInt8]) throws {
        let image = try GrayImage.decodePNG(bytes, maximumPixels: Omniglot.maximumPixels)
        guard image.height >= 28, image.width >= 28 else { return }
        var out = [UInt8](repeating: 0, count: 28 * 28)
        try out.withUnsafeMutableBufferPointer {
            try GrayImage.resizeArea(image.pixels, height: image.height, width: image.width, side: 28, invert: true, into: $0)
        }
    }

    /// Opens a zip archive (written to `scratch`, a file path), lists it and reads every entry as Omniglot's
    /// loader does (bounded size, CRC checked).
    public static func zip(_ bytes: [UInt8], scratch: URL) throws {
        try Data(bytes).write(to: scratch)
        let archive = try ZipArchive(path: scratch.path)
        for index in archive.names.indices {
            do { _ = try archive.read(index, maximumSize: Omniglot.maximumFileBytes) } catch let error as MetaCoreError where error.kind == .corruptData {}
        }
    }
}
