import Foundation

/// Writes `data` to `url` atomically: to a temporary file beside it, flushed to disk, then renamed over it, so
/// an interrupted write never leaves a truncated file behind (checkpoints, dataset caches).
public func writeAtomically(_ data: Data, to url: URL) throws {
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
    do {
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw MetaCoreError(.io, "cannot create \(temporary.path)")
        }
        let handle = try FileHandle(forWritingTo: temporary)
        try handle.write(contentsOf: data)
        try handle.synchronize()
        try handle.close()
        guard rename(temporary.path, url.path) == 0 else {
            throw MetaCoreError(.io, "cannot move \(temporary.lastPathComponent) into place at \(url.path) (errno \(errno))")
        }
    } catch let error as MetaCoreError {
        try? FileManager.default.removeItem(at: temporary)
        throw error
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw MetaCoreError(.io, "cannot write \(url.path): \(error.localizedDescription)")
    }
}
