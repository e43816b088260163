package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is Linux's USER_HZ (100 on every architecture Go supports),
// the unit of /proc/<pid>/stat and /proc/stat.
const clockTick = 10 * time.Millisecond

// CPUSample is cumulative CPU time: per watched process, and the machine's
// busy and idle time over all cores.
type CPUSample struct {
	Procs      map[string]time.Duration
	Busy, Idle time.Duration
}

// sampleCPU reads the counters; a process that cannot be read is left out.
func sampleCPU(pids map[string]int) CPUSample {
	s := CPUSample{Procs: map[string]time.Duration{}}
	for name, pid := range pids {
		if d, err := processCPU(pid); err == nil {
			s.Procs[name] = d
		}
	}
	s.Busy, s.Idle, _ = machineCPU()
	return s
}

// Sub is the CPU used between two samples.
func (s CPUSample) Sub(before CPUSample) CPUSample {
	out := CPUSample{Procs: map[string]time.Duration{}, Busy: s.Busy - before.Busy, Idle: s.Idle - before.Idle}
	for name, d := range s.Procs {
		if b, ok := before.Procs[name]; ok {
			out.Procs[name] = d - b
		}
	}
	return out
}

// processCPU is a process's user+system time, all threads.
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(data))
}

// parseProcStat reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseProcStat(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command field in %.80q", line)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command, want 13+", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat: bad time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// machineCPU reads /proc/stat's aggregate line: busy is user, nice,
// system, irq, softirq and steal; idle is idle and iowait.
func machineCPU() (busy, idle time.Duration, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return parseMachineStat(line)
}

func parseMachineStat(line string) (busy, idle time.Duration, err error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("proc stat: unexpected aggregate line %.80q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("proc stat: bad counter %q", f[i+1])
		}
	}
	user, nice, system, idleT, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	return time.Duration(user+nice+system+irq+softirq+steal) * clockTick, time.Duration(idleT+iowait) * clockTick, nil
}

// CPUPerRequest is where one request's CPU went, in microseconds.
type CPUPerRequest map[string]float64

// perRequest divides a run's CPU by its requests; "other" is busy time no
// watched process accounts for (kernel softirqs, other processes), "idle"
// the idle time of all cores.
func perRequest(d CPUSample, wrkCPU time.Duration, requests int64) CPUPerRequest {
	if requests <= 0 {
		return nil
	}
	us := func(t time.Duration) float64 { return float64(t) / float64(time.Microsecond) / float64(requests) }
	out := CPUPerRequest{"wrk": us(wrkCPU), "idle": us(d.Idle)}
	accounted := wrkCPU
	for name, t := range d.Procs {
		out[name] = us(t)
		accounted += t
	}
	out["other"] = us(d.Busy - accounted)
	return out
}
