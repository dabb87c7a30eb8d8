import Foundation

/// Read-only bytes that outlive the call that produced them: a buffer this process filled, or a file mapped
/// into memory (a dataset cache), unmapped when the last reference goes.
final class PixelStorage: @unchecked Sendable {
    /// Immutable after `init`, so sharing across threads is safe.
    let bytes: UnsafeRawBufferPointer
    private let release: @Sendable () -> Void

    private init(bytes: UnsafeRawBufferPointer, release: @escaping @Sendable () -> Void) {
        self.bytes = bytes; self.release = release
    }

    deinit { release() }

    /// `count` bytes, zeroed, that `fill` writes once before anyone reads them.
    static func filled(count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows -> PixelStorage {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        do { try fill(UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])) } catch {
            buffer.deallocate()
            throw error
        }
        let address = UInt(bitPattern: buffer.baseAddress)
        return PixelStorage(bytes: UnsafeRawBufferPointer(rebasing: buffer[..<count])) {
            UnsafeMutableRawPointer(bitPattern: address)?.deallocate()
        }
    }

    /// A copy of `bytes`.
    static func copying(_ bytes: [UInt8]) -> PixelStorage {
        filled(count: bytes.count) { buffer in bytes.withUnsafeBytes { buffer.copyMemory(from: $0) } }
    }

    /// The file at `url`, mapped read-only: pages are read as they are touched, and shared with every other
    /// process mapping it. The caches are replaced by renaming, never rewritten in place, so a mapped file does
    /// not shrink under its mapping. `nil` if it cannot be opened or mapped.
    static func mapping(_ url: URL) -> PixelStorage? {
        let descriptor = open(url.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size > 0 else { return nil }
        let count = Int(status.st_size)
        guard let address = mmap(nil, count, PROT_READ, MAP_PRIVATE, descriptor, 0), address != MAP_FAILED else { return nil }
        let start = UInt(bitPattern: address)
        return PixelStorage(bytes: UnsafeRawBufferPointer(start: address, count: count)) {
            _ = munmap(UnsafeMutableRawPointer(bitPattern: start), count)
        }
    }
}
