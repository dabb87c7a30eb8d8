import CDataIO

/// A zip archive open for reading (libzip, through CDataIO).
final class ZipArchive {
    let path: String
    private let handle: OpaquePointer

    init(path: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = mc_zip_open(path, &error, error.count) else { throw MetaCoreError(.corruptData, errorText(error)) }
        self.path = path
        self.handle = handle
    }

    deinit { mc_zip_close(handle) }

    /// Entry names, in archive order (directories end in "/").
    var names: [String] {
        (0 ..< mc_zip_count(handle)).map { mc_zip_name(handle, $0).map { String(cString: $0) } ?? "" }
    }

    /// The uncompressed bytes of entry `index`, its CRC checked; throws before allocating if the archive says
    /// the entry is larger than `maximumSize` (a zip bomb, or a corrupt directory).
    func read(_ index: Int, maximumSize: Int) throws -> [UInt8] {
        let size = mc_zip_size(handle, Int64(index))
        guard size >= 0 else { throw MetaCoreError(.corruptData, "\(path): entry \(index) has no readable size") }
        guard size <= maximumSize else {
            throw MetaCoreError(.corruptData, "\(path): entry \(index) claims \(size) bytes, more than the \(maximumSize) such an entry can hold")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        var error = [CChar](repeating: 0, count: 512)
        let status = bytes.withUnsafeMutableBufferPointer { mc_zip_read(handle, Int64(index), $0.baseAddress, size, &error, error.count) }
        guard status == 0 else { throw MetaCoreError(.corruptData, "\(path): \(errorText(error))") }
        return bytes
    }
}
