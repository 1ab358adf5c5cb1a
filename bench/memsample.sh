#!/usr/bin/env bash
# bench/memsample.sh PID OUTFILE
# Samples RssAnon (private, anonymous resident memory) of process PID every
# 20 ms until it exits, then writes the peak in kB to OUTFILE.  run.sh starts
# it from inside each measured psql session, on that session's warehouse
# backend: VmHWM also counts the shared_buffers pages the backend touched,
# which says nothing about whether the backend's own memory stays flat.
# RssAnon = resident - shared pages of /proc/PID/statm.  perl (perl-base is
# essential in Debian) keeps one cheap process running instead of forking a
# reader per sample.
pid=$1 out=$2
[[ $pid =~ ^[0-9]+$ && -n $out ]] || exit 1
page_kb=$(($(getconf PAGESIZE) / 1024))
exec perl -e '
    my ($pid, $out, $page_kb) = @ARGV;
    my $peak = 0;
    while (open(my $fh, "<", "/proc/$pid/statm")) {
        while (<$fh>) {
            my @f = split; my $anon = ($f[1] - $f[2]) * $page_kb; $peak = $anon if $anon > $peak; last;
        }
        close $fh;
        select(undef, undef, undef, 0.02);
    }
    open(my $o, ">", "$out.tmp") or exit 1;
    print $o "$peak\n";
    close $o;
    rename("$out.tmp", $out);
' "$pid" "$out" "$page_kb"
