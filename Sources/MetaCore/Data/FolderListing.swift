import Foundation

/// Listing a dataset's folders the way every loader does: hidden names aside, in name order, a link to a folder
/// counted as the folder, and a name with a control character (a newline, say) refused, since the caches store
/// names one per line.
enum FolderListing {
    /// Every name in the folder at `url`, sorted.
    static func names(in url: URL) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: url.path).sorted() } catch {
            throw MetaCoreError(.io, "cannot list \(url.path): \(describe(error))")
        }
    }

    /// The folders in `url`.
    static func subfolders(in url: URL) throws -> [URL] {
        try names(in: url).filter { !$0.hasPrefix(".") }.compactMap { name in
            let child = url.appendingPathComponent(name)
            guard isDirectory(child) else { return nil }
            try checkName(name, in: url.path)
            return child
        }
    }

    /// The files in `url` whose names `keep` accepts.
    static func files(in url: URL, where keep: (String) -> Bool) throws -> [URL] {
        try names(in: url).filter { !$0.hasPrefix(".") && keep($0) }.compactMap { name in
            let child = url.appendingPathComponent(name)
            guard !isDirectory(child) else { return nil }
            try checkName(name, in: url.path)
            return child
        }
    }

    static func isDirectory(_ url: URL) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &directory) && directory.boolValue
    }

    static func checkName(_ name: String, in place: String) throws {
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw MetaCoreError(.corruptData, "\(place) holds \(name.debugDescription), a name with a control character; rename it")
        }
    }
}
