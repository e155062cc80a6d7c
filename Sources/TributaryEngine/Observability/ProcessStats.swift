import Foundation

/// This process's own figures, read from `/proc` (Linux): resident memory and CPU time. Zero where
/// `/proc` is not available.
public enum ProcessStats {
    /// Resident set size now, in bytes (VmRSS).
    public static func residentBytes() -> Double { statusKiB("VmRSS:") * 1024 }

    /// Peak resident set size, in MiB (VmHWM).
    public static func peakRSSMiB() -> Double { statusKiB("VmHWM:") / 1024 }

    /// CPU time (user + system) a process has used, in seconds, from /proc/PID/stat.
    public static func cpuSeconds(pid: Int32? = nil) -> Double {
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = statFields(pid.map { "/proc/\($0)/stat" } ?? "/proc/self/stat")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]), ticks > 0 else { return 0 }
        return (user + system) / ticks
    }

    /// Open file descriptors of this process.
    public static func openFileDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
    }

    /// The fields of a `/proc/PID/stat` line after `(comm)` (which may hold spaces); empty when unreadable.
    static func statFields(_ path: String) -> [Substring] {
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8), let close = stat.lastIndex(of: ")") else { return [] }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    static func statusKiB(_ field: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(field) {
            // "VmRSS:\t  123456 kB" — tabs and spaces vary with the number's width.
            return Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "0") ?? 0
        }
        return 0
    }
}

extension ProcessStats {
    /// Seconds since this process started (from /proc/self/stat's start time and the system's uptime).
    public static func uptimeSeconds() -> Double {
        guard let uptimeText = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
            let uptime = Double(uptimeText.split(separator: " ").first ?? "")
        else { return 0 }
        let fields = statFields("/proc/self/stat")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        // Field 22 (starttime) is the 20th after "(comm)".
        guard fields.count > 19, let start = Double(fields[19]), ticks > 0 else { return 0 }
        return max(0, uptime - start / ticks)
    }
}
