import CDataIO
import Foundation

/// An 8-bit image: `height` rows of `width` pixels, each of `channels` samples (1: gray, 3: red, green, blue),
/// row-major from the top, a pixel's samples side by side — what MetaCore's datasets decode their files to
/// before they become model inputs.
///
/// ```swift
/// let photo = try Image(contentsOf: URL(fileURLWithPath: "bird.jpg"), channels: 3)
/// let input = try photo.resized(toFit: 84, mode: .centerCrop)       // 84x84, aspect ratio kept
///     .scalars(mean: [0.485, 0.456, 0.406], standardDeviation: [0.229, 0.224, 0.225])  // [3, 84, 84]
/// ```
///
/// Decoding reads PNG (libpng) and JPEG (libjpeg-turbo), refuses what ``Limits`` bounds before it allocates
/// the pixels, and converts colour to gray as PIL's `convert("L")` does.
public struct Image: Sendable, Hashable {
    public let width: Int
    public let height: Int
    public let channels: Int
    /// `height * width * channels` samples.
    public let pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0, channels == 1 || channels == 3 else {
            throw MetaCoreError.argument("an image is at least 1x1 with 1 (gray) or 3 (RGB) channels, not \(width)x\(height) with \(channels)")
        }
        guard pixels.count == width * height * channels else {
            throw MetaCoreError(.shapeMismatch, "a \(width)x\(height) image of \(channels) channels has \(width * height * channels) samples, not \(pixels.count)")
        }
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    /// The file formats images are read from and written to.
    public enum Format: String, Sendable, CaseIterable {
        case png, jpeg

        /// The format of `bytes` by its signature, or `nil`.
        public init?(of bytes: [UInt8]) {
            switch mc_image_format_of(bytes, bytes.count) {
            case MC_IMAGE_PNG: self = .png
            case MC_IMAGE_JPEG: self = .jpeg
            default: return nil
            }
        }

        /// Whether a file name's extension is this format's (case-insensitive): png; jpg, jpeg.
        public static func of(fileName: String) -> Format? {
            switch (fileName as NSString).pathExtension.lowercased() {
            case "png": return .png
            case "jpg", "jpeg": return .jpeg
            default: return nil
            }
        }

        var code: mc_image_format { self == .png ? MC_IMAGE_PNG : MC_IMAGE_JPEG }
    }

    /// What decoding accepts: anything beyond is refused before it costs memory or time. The defaults take any
    /// photograph a dataset holds (PIL's decompression-bomb limit is 89 million pixels).
    public struct Limits: Sendable, Hashable {
        /// The largest file, in bytes.
        public var maximumBytes: Int
        /// The most pixels (width × height) a header may claim.
        public var maximumPixels: Int
        /// The most scans a progressive JPEG may have; each is a pass over the whole image.
        public var maximumScans: Int

        public init(maximumBytes: Int = 256 << 20, maximumPixels: Int = 64 << 20, maximumScans: Int = 500) {
            self.maximumBytes = maximumBytes; self.maximumPixels = maximumPixels; self.maximumScans = maximumScans
        }
    }

    /// Width, height and stored channels (1 gray, 3 colour) of an image file's bytes, from its header alone.
    public static func header(of bytes: [UInt8]) throws -> (width: Int, height: Int, channels: Int) {
        var error = [CChar](repeating: 0, count: 512)
        var width: Int32 = 0, height: Int32 = 0, channels: Int32 = 0
        guard mc_image_info(bytes, bytes.count, &width, &height, &channels, &error, error.count) == 0 else {
            throw MetaCoreError(.corruptData, errorText(error))
        }
        return (Int(width), Int(height), Int(channels))
    }

    /// Decodes PNG or JPEG `bytes` to `channels` (1 or 3; `nil`: as the file stores it).
    public init(decoding bytes: [UInt8], channels: Int? = nil, limits: Limits = Limits()) throws {
        guard bytes.count <= limits.maximumBytes else {
            throw MetaCoreError(.corruptData, "an image file of \(bytes.count) bytes is more than the \(limits.maximumBytes) allowed")
        }
        let header = try Self.header(of: bytes)
        guard header.width > 0, header.height > 0, header.width * header.height <= limits.maximumPixels else {
            throw MetaCoreError(.corruptData, "the image header claims \(header.width)x\(header.height) pixels, more than the \(limits.maximumPixels) allowed")
        }
        let channels = channels ?? header.channels
        guard channels == 1 || channels == 3 else { throw MetaCoreError.argument("images decode to 1 (gray) or 3 (RGB) channels, not \(channels)") }
        var error = [CChar](repeating: 0, count: 512)
        var pixels = [UInt8](repeating: 0, count: header.width * header.height * channels)
        let status = pixels.withUnsafeMutableBufferPointer {
            mc_image_decode(bytes, bytes.count, Int32(channels), Int32(limits.maximumScans), $0.baseAddress,
                            Int32(header.width), Int32(header.height), &error, error.count)
        }
        guard status == 0 else { throw MetaCoreError(.corruptData, errorText(error)) }
        try self.init(width: header.width, height: header.height, channels: channels, pixels: pixels)
    }

    /// Reads and decodes the image file at `url`; errors name the file.
    public init(contentsOf url: URL, channels: Int? = nil, limits: Limits = Limits()) throws {
        do { try self.init(decoding: try readBounded(url, maximumBytes: limits.maximumBytes), channels: channels, limits: limits) }
        catch let error as MetaCoreError { throw MetaCoreError(error.kind, "\(url.path): \(error.message)") }
    }

    /// The image as a PNG or JPEG file's bytes (`quality` 1-100: JPEG's).
    public func encoded(as format: Format, quality: Int = 95) throws -> [UInt8] {
        var error = [CChar](repeating: 0, count: 512)
        var out: UnsafeMutablePointer<UInt8>?, size = 0
        guard mc_image_encode(format.code, pixels, Int32(width), Int32(height), Int32(channels), Int32(quality), 0,
                              &out, &size, &error, error.count) == 0, let out else {
            throw MetaCoreError.argument(errorText(error))
        }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: size))
    }

    // MARK: Geometry and colour

    /// The image area-resized to `height` x `width` (OpenCV's INTER_AREA, PIL's BOX), optionally inverted
    /// (v → 255 − v) first.
    public func resized(height: Int, width: Int, inverting: Bool = false) throws -> Image {
        var out = [UInt8](repeating: 0, count: height * width * channels)
        try out.withUnsafeMutableBufferPointer { try resize(into: $0, height: height, width: width, inverting: inverting) }
        return try Image(width: width, height: height, channels: channels, pixels: out)
    }

    /// Area-resizes into `destination`, `height * width * channels` samples.
    func resize(into destination: UnsafeMutableBufferPointer<UInt8>, height: Int, width: Int, inverting: Bool = false) throws {
        guard height > 0, width > 0, destination.count == height * width * channels else {
            throw MetaCoreError.argument("cannot resize to \(width)x\(height) into \(destination.count) samples")
        }
        var error = [CChar](repeating: 0, count: 512)
        guard mc_resize_area_u8(pixels, Int32(self.height), Int32(self.width), Int32(channels), destination.baseAddress,
                                Int32(height), Int32(width), inverting ? 1 : 0, &error, error.count) == 0 else {
            throw MetaCoreError.argument(errorText(error))
        }
    }

    /// How ``resized(toFit:mode:)`` makes a square.
    public enum SquareMode: String, Sendable, CaseIterable, Codable {
        /// Resize both sides to the square's, whatever the aspect ratio (PIL's `resize((s, s))`, as the common
        /// miniImageNet preprocessing does).
        case stretch
        /// Resize the shorter side to the square's, keeping the aspect ratio, then cut the centre square
        /// (torchvision's `Resize(s)` then `CenterCrop(s)`).
        case centerCrop = "center-crop"
    }

    /// The image as a `side` x `side` square.
    public func resized(toFit side: Int, mode: SquareMode) throws -> Image {
        switch mode {
        case .stretch:
            return try resized(height: side, width: side)
        case .centerCrop:
            // The shorter side becomes `side`; the longer one keeps the ratio, rounded as torchvision does.
            let (h, w) = height <= width ? (side, max(side, Int((Double(side) * Double(width) / Double(height)).rounded(.down))))
                                         : (max(side, Int((Double(side) * Double(height) / Double(width)).rounded(.down))), side)
            return try resized(height: h, width: w).cropped(top: (h - side) / 2, left: (w - side) / 2, height: side, width: side)
        }
    }

    /// The `height` x `width` window whose top-left pixel is (`top`, `left`).
    public func cropped(top: Int, left: Int, height: Int, width: Int) throws -> Image {
        guard top >= 0, left >= 0, height > 0, width > 0, top + height <= self.height, left + width <= self.width else {
            throw MetaCoreError.argument("a \(width)x\(height) crop at (\(left), \(top)) does not fit in a \(self.width)x\(self.height) image")
        }
        var out: [UInt8] = []
        out.reserveCapacity(height * width * channels)
        let rowLength = width * channels
        for y in top ..< top + height {
            let start = (y * self.width + left) * channels
            out += pixels[start ..< start + rowLength]
        }
        return try Image(width: width, height: height, channels: channels, pixels: out)
    }

    /// Every sample v as 255 − v.
    public func inverted() throws -> Image {
        try Image(width: width, height: height, channels: channels, pixels: pixels.map { 255 - $0 })
    }

    /// The image with `channels` channels: gray to RGB repeats the value, RGB to gray is PIL's luma.
    public func converted(channels: Int) throws -> Image {
        guard channels != self.channels else { return self }
        guard channels == 1 || channels == 3 else { throw MetaCoreError.argument("images have 1 (gray) or 3 (RGB) channels, not \(channels)") }
        var out: [UInt8] = []
        out.reserveCapacity(width * height * channels)
        if channels == 3 {
            for v in pixels { out += [v, v, v] }
        } else {
            for i in stride(from: 0, to: pixels.count, by: 3) {
                let r = 19595 * UInt32(pixels[i]), g = 38470 * UInt32(pixels[i + 1]), b = 7471 * UInt32(pixels[i + 2])
                out.append(UInt8((r + g + b + 0x8000) >> 16))
            }
        }
        return try Image(width: width, height: height, channels: channels, pixels: out)
    }

    /// The model input: channels first (`[channels, height, width]`, as ``Conv2d`` takes them), each sample
    /// v / 255 then standardised per channel, (x − mean) / standardDeviation.
    public func scalars(mean: [Float]? = nil, standardDeviation: [Float]? = nil) throws -> [Float] {
        let mean = mean ?? Array(repeating: 0, count: channels), deviation = standardDeviation ?? Array(repeating: 1, count: channels)
        guard mean.count == channels, deviation.count == channels, deviation.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw MetaCoreError.argument("normalising a \(channels)-channel image needs \(channels) means and \(channels) positive standard deviations, got \(mean) and \(deviation)")
        }
        var out = [Float](repeating: 0, count: pixels.count)
        let plane = width * height
        for c in 0 ..< channels {
            let scale = 1 / (255 * deviation[c]), shift = -mean[c] / deviation[c]
            for i in 0 ..< plane { out[c * plane + i] = Float(pixels[i * channels + c]) * scale + shift }
        }
        return out
    }
}

/// The bytes of the file at `url`, refused past `maximumBytes` before they are read.
func readBounded(_ url: URL, maximumBytes: Int) throws -> [UInt8] {
    let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
    guard size <= maximumBytes else {
        throw MetaCoreError(.corruptData, "the file is \(size) bytes, more than the \(maximumBytes) allowed")
    }
    guard let data = FileManager.default.contents(atPath: url.path) else { throw MetaCoreError(.io, "cannot read the file") }
    guard data.count <= maximumBytes else { throw MetaCoreError(.corruptData, "the file is more than \(maximumBytes) bytes") }
    return [UInt8](data)
}

/// FNV-1a (64 bits) of `text`'s UTF-8, continuing from `hash`: the caches' names and fingerprints (change
/// detection, not security).
func fnv1a(_ text: String, continuing hash: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
    text.utf8.reduce(hash) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
}

/// CRC-32 (zlib's) of `bytes`, continuing from `crc`.
func crc32<C: ContiguousBytes>(_ bytes: C, continuing crc: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { mc_crc32(crc, $0.bindMemory(to: UInt8.self).baseAddress, $0.count) }
}

/// The NUL-terminated message a CDataIO function wrote into `buffer`.
func errorText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
