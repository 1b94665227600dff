/*
 * common.h - the plumbing every sample shares, so that each sample file shows
 * only its one new idea: which flags it gives clone(), and what the child does
 * before it runs the command.
 */
#define _GNU_SOURCE /* clone() and the CLONE_* flags are Linux extensions */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

/* clone() runs the child on a stack we provide; stacks grow down, so it gets the top. */
#define STACK_SIZE (1024 * 1024)
static char child_stack[STACK_SIZE];
#define STACK_TOP (child_stack + STACK_SIZE)

/* Report a failed system call the way the shell would, and give up. */
static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(1);
}

/* The command to run in the child: the sample's arguments, or /bin/bash as in the article. */
static char **command_line(int argc, char *argv[])
{
    static char *bash[] = {"/bin/bash", NULL};
    return argc > 1 ? argv + 1 : bash;
}

/*
 * Replace the child with the command. Flush first: once exec succeeds, anything
 * still sitting in stdout's buffer is gone. If exec fails, answer like a shell:
 * 127 when there is no such command, 126 when it cannot be run.
 */
static int run_command(char **command)
{
    fflush(stdout);
    execvp(command[0], command);
    fprintf(stderr, "%s: %s\n", command[0], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}

/* Wait for the child and turn its end into a shell-style exit status. */
static int wait_for(pid_t child)
{
    int status;
    if (waitpid(child, &status, 0) == -1)
        die("waitpid");
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}
