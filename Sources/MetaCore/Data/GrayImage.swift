import CDataIO
import Foundation

/// 8-bit grayscale image operations for dataset loading (libpng and the area filter, through CDataIO).
enum GrayImage {
    /// Decodes PNG bytes to gray pixels, row-major; returns the pixels and the image's height and width. An
    /// image whose header claims more than `maximumPixels` is refused before anything is allocated.
    static func decodePNG(_ bytes: [UInt8], maximumPixels: Int) throws -> (pixels: [UInt8], height: Int, width: Int) {
        var error = [CChar](repeating: 0, count: 512)
        var width: Int32 = 0, height: Int32 = 0
        guard mc_png_size(bytes, bytes.count, &width, &height, &error, error.count) == 0 else {
            throw MetaCoreError(.corruptData, errorText(error))
        }
        guard width > 0, height > 0, Int(width) * Int(height) <= maximumPixels else {
            throw MetaCoreError(.corruptData, "the PNG header claims \(width)x\(height) pixels, more than the \(maximumPixels) an image of this dataset has")
        }
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height))
        let status = pixels.withUnsafeMutableBufferPointer {
            mc_png_read_gray(bytes, bytes.count, $0.baseAddress, width, height, &error, error.count)
        }
        guard status == 0 else { throw MetaCoreError(.corruptData, errorText(error)) }
        return (pixels, Int(height), Int(width))
    }

    /// Area-filter downscale of `pixels` [height, width] to [side, side] into `destination`, optionally inverted.
    static func resizeArea(_ pixels: [UInt8], height: Int, width: Int, side: Int, invert: Bool,
                           into destination: UnsafeMutableBufferPointer<UInt8>) throws {
        precondition(destination.count == side * side)
        var error = [CChar](repeating: 0, count: 512)
        guard mc_resize_area_u8(pixels, Int32(height), Int32(width), destination.baseAddress, Int32(side), Int32(side),
                                invert ? 1 : 0, &error, error.count) == 0 else {
            throw MetaCoreError.argument(errorText(error))
        }
    }

    /// `pixels` [side, side] rotated counter-clockwise by `quarterTurns` × 90°, as floats in [0, 1].
    static func rotate(_ pixels: UnsafeBufferPointer<UInt8>, side s: Int, quarterTurns: Int,
                       into out: UnsafeMutablePointer<Float>) {
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

    /// CRC-32 of `bytes` (zlib).
    static func crc32<C: ContiguousBytes>(_ bytes: C, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { mc_crc32(crc, $0.bindMemory(to: UInt8.self).baseAddress, $0.count) }
    }
}

/// The NUL-terminated message a CDataIO function wrote into `buffer`.
func errorText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
