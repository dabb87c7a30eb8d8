import Foundation
import Synchronization

/// Writes `data` to `url` atomically: to a temporary file beside it, flushed to disk, then renamed over it, so
/// an interrupted write never leaves a truncated file behind (checkpoints, dataset caches). The temporary file
/// is named by process and host, so that processes writing the same file at once — MPI ranks building one
/// dataset cache on a shared filesystem — each write their own, and the last rename wins with a whole file.
public func writeAtomically(_ data: Data, to url: URL) throws {
    try writeAtomically(to: url) { try $0.write(contentsOf: data) }
}

/// Writes the file at `url` atomically, as ``writeAtomically(_:to:)`` does, with what `write` puts through the
/// handle (a file too large to build in memory first, such as an image dataset's cache).
public func writeAtomically(to url: URL, _ write: (FileHandle) throws -> Void) throws {
    removeStaleTemporaries(of: url)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid())@\(hostName).tmp")
    do {
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw MetaCoreError(.io, "cannot create \(temporary.path)")
        }
        let handle = try FileHandle(forWritingTo: temporary)
        do { try write(handle) } catch {
            try? handle.close()
            throw error
        }
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
        throw MetaCoreError(.io, "cannot write \(url.path): \(describe(error))")
    }
}

/// The destinations whose stale temporary files this process has removed: once each is enough (a run that
/// checkpoints every iteration would otherwise list its directory every iteration).
private let cleaned = Mutex<Set<String>>([])

/// This machine's name, as the temporary files of ``writeAtomically(_:to:)`` carry it.
private let hostName: String = {
    var name = [CChar](repeating: 0, count: 256)
    guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
    let text = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return text.isEmpty || text.contains("/") ? "localhost" : text
}()

/// The temporary files of writes to `url` whose process on this host is gone (killed during the write): removed,
/// so that interrupted writes do not pile up beside a checkpoint or a cache. Done at the first write to `url`.
/// Another host's are left alone: its processes cannot be seen from here.
func removeStaleTemporaries(of url: URL) {
    guard cleaned.withLock({ $0.insert(url.standardizedFileURL.path).inserted }) else { return }
    let directory = url.deletingLastPathComponent(), prefix = ".\(url.lastPathComponent)."
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return }
    for name in names where name.hasPrefix(prefix) && name.hasSuffix(".tmp") {
        let owner = name.dropFirst(prefix.count).dropLast(4).split(separator: "@", maxSplits: 1)
        guard owner.count == 1 || owner[1] == hostName, let pid = Int32(owner[0]), pid != getpid() else { continue }
        if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(at: directory.appendingPathComponent(name)) }
    }
}

/// Throws unless a file can be written at `url`: its directory exists and is writable (and `url`, if it
/// exists, is a writable file) — checked before a run starts rather than at its first checkpoint.
public func checkWritable(_ url: URL, _ what: String) throws {
    let directory = url.deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw MetaCoreError(.io, "cannot write the \(what) \(url.path): the directory \(directory) does not exist")
    }
    guard access(directory, W_OK) == 0 else {
        throw MetaCoreError(.io, "cannot write the \(what) \(url.path): the directory \(directory) is not writable (\(String(cString: strerror(errno))))")
    }
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
        guard !isDirectory.boolValue else { throw MetaCoreError(.io, "cannot write the \(what) \(url.path): it is a directory") }
    }
}

/// A Foundation or POSIX error as a sentence (not "The operation could not be completed (NSCocoaErrorDomain 516)").
func describe(_ error: any Error) -> String {
    if let error = error as? MetaCoreError { return error.message }
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    switch ns.code {
    case NSFileNoSuchFileError, NSFileReadNoSuchFileError: return "no such file or directory"
    case NSFileWriteFileExistsError: return "a file is in the way"
    case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: return "permission denied"
    case NSFileWriteOutOfSpaceError: return "no space left on the device"
    default: return ns.localizedDescription
    }
}
