/*
 * PID 1 of a container with a root filesystem of its own: init.py's job, in C.
 *
 * Usage: init COMMAND [ARG...]
 *
 * Why not init.py? It is the host's python, and a container must run no host binary: the
 * kernel shows PID 1's program as /proc/1/exe, and through that link the container's root
 * could open the host's file (CVE-2019-5736 overwrote runc that way). This program is linked
 * statically, so it needs no libc from the image, and the runtime bind-mounts it read-only at
 * /dev/init; the container's first process execs it once every step is done.
 *
 * Its job is init.py's: run the command as PID 2, forward the container's signals to it (a
 * PID 1 without a handler would drop them), reap every zombie, and exit as the command did,
 * 128+N when a signal N killed it. The launcher hands it the watched signals already blocked,
 * so none sent in between is lost.
 *
 * If descriptor 3 is open it is the lab's report pipe: a command that cannot be started is
 * reported there as one JSON line, {"error": "..."}, and as one line on stderr, with the exit
 * codes of init.py: 127 not found, 126 not executable. Descriptor 4, if open, is the start
 * pipe: the command holds it until its exec closes it, which tells the launcher, outside the
 * container, that the command has started. Both are close-on-exec and init closes its own
 * copies as soon as it has forked, so no program in the container ever holds them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { REPORT_FD = 3, START_FD = 4, LAB_ERROR = 125, NOT_EXECUTABLE = 126, NOT_FOUND = 127 };

static const int watched_signals[] = {SIGHUP,  SIGINT,  SIGQUIT,  SIGTERM,
                                      SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};

/* The length of the UTF-8 character at C, or 0 if it is not a whole, well-formed one. */
static size_t character_length(const unsigned char *c) {
    size_t length = *c < 0x80 ? 1 : *c >= 0xF8 ? 0 : *c >= 0xF0 ? 4 : *c >= 0xE0 ? 3
                  : *c >= 0xC2 ? 2 : 0;
    for (size_t i = 1; i < length; i++)
        if ((c[i] & 0xC0) != 0x80)
            return 0;
    return length;
}

/* Write {"error": MESSAGE} as one line in one write(), shorter than PIPE_BUF, so that it never
 * interleaves with another process's line. A long message is cut between two characters; a
 * byte that is not part of a UTF-8 character becomes '?', so the line is always valid JSON. */
static void report(const char *message) {
    char line[1024];
    size_t used = (size_t)snprintf(line, sizeof line, "{\"error\": \"");
    const unsigned char *c = (const unsigned char *)message;
    while (*c && used < sizeof line - 16) {
        size_t length = character_length(c);
        if (length == 0) {
            line[used++] = '?';
            c++;
        } else if (*c == '"' || *c == '\\') {
            used += (size_t)sprintf(line + used, "\\%c", *c++);
        } else if (*c < 0x20) {
            used += (size_t)sprintf(line + used, "\\u%04x", *c++);
        } else {
            memcpy(line + used, c, length);
            used += length;
            c += length;
        }
    }
    used += (size_t)sprintf(line + used, "\"}\n");
    if (write(REPORT_FD, line, used) < 0) {
        /* No report pipe (init started by hand), or no one listening: stderr says it all. */
    }
    fprintf(stderr, "labkit: %s\n", message);
}

/* In the child, after execvp() failed: say why, and return the shell's exit code for it. */
static int cannot_execute(const char *name, int error) {
    char message[768];
    if (error == ENOENT || error == ENOTDIR) {
        const char *path = getenv("PATH");
        if (strchr(name, '/'))
            snprintf(message, sizeof message, "%s: command not found", name);
        else
            snprintf(message, sizeof message, "%s: command not found in PATH=%s", name,
                     path ? path : "/bin:/usr/bin");
        report(message);
        return NOT_FOUND;
    }
    snprintf(message, sizeof message, "%s: cannot execute it: %s", name, strerror(error));
    report(message);
    return NOT_EXECUTABLE;
}

/* A wait() status as a shell reports it: the exit code, or 128+N for a signal N. */
static int exit_code(int status) {
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Forward signals to the command and reap every child until the command has exited. */
static int supervise(pid_t command, const sigset_t *watched) {
    int code = -1;
    while (code < 0) {
        siginfo_t info;
        if (sigwaitinfo(watched, &info) < 0)
            continue; /* EINTR: a stop and continue of init itself */
        if (info.si_signo != SIGCHLD) {
            kill(command, info.si_signo);
            continue;
        }
        /* One SIGCHLD can stand for many exits: reap until none is left. */
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            if (pid == command)
                code = exit_code(status);
    }
    return code;
}

int main(int argc, char *argv[]) {
    if (argc < 2) {
        fprintf(stderr, "labkit: usage: %s COMMAND [ARG...]\n", argv[0]);
        return LAB_ERROR;
    }
    sigset_t watched;
    sigemptyset(&watched);
    for (size_t i = 0; i < sizeof watched_signals / sizeof *watched_signals; i++)
        sigaddset(&watched, watched_signals[i]);
    sigprocmask(SIG_BLOCK, &watched, NULL);
    fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC); /* EBADF, harmless, when there is no pipe */
    fcntl(START_FD, F_SETFD, FD_CLOEXEC);

    pid_t command = fork();
    if (command < 0) {
        report("init cannot fork the command");
        return LAB_ERROR;
    }
    if (command == 0) {
        sigprocmask(SIG_UNBLOCK, &watched, NULL);
        execvp(argv[1], argv + 1);
        _exit(cannot_execute(argv[1], errno));
    }
    close(REPORT_FD);
    close(START_FD);
    return supervise(command, &watched);
}
