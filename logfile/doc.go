// Package logfile keeps container output in size-capped files and reads
// them back, optionally following new output.
//
// A capped file holds at most MaxBytes in "NAME" plus one previous
// generation in "NAME.1": when a write would pass the cap the file is
// renamed to NAME.1 and a new one started. Readers that follow notice the
// rotation by inode and carry on with the new file.
//
// RunShimDriver is the logging-binary side of containerd's binary:// log
// URI: the shim hands it the task's stdout and stderr as fds 3 and 4 and
// waits for fd 5 to close before starting the task.
package logfile
