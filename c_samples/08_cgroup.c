/*
 * 08_cgroup - a cgroup by hand: make a group, give it a memory limit, move a
 * child into it, and let the child allocate until the kernel's OOM killer ends
 * it. No namespace at all: a limit is a different tool from isolation.
 *
 * usage: 08_cgroup [LIMIT_MB]    (default 32)
 */
#define _GNU_SOURCE /* strsignal() */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Report a failed system call the way the shell would, and give up. (No clone() here, so
   none of common.h's plumbing.) */
static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(1);
}

/* Where the group goes and what its files are called, in each version of cgroups. */
struct cgroup_kind {
    const char *tree, *limit_file, *events_file, *version;
};
static const struct cgroup_kind V2 = {"/sys/fs/cgroup", "memory.max", "memory.events", "v2"};
static const struct cgroup_kind V1 = {"/sys/fs/cgroup/memory", "memory.limit_in_bytes",
                                      "memory.oom_control", "v1"};

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    if (file == NULL || fputs(text, file) == EOF || fclose(file) == EOF)
        die(path);
}

/* Print the line of a flat-keyed file that starts with key: "oom_kill 1". */
static void print_line(const char *dir, const char *name, const char *key)
{
    char path[512], line[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "r");
    if (file == NULL)
        die(path);
    while (fgets(line, sizeof line, file))
        if (strncmp(line, key, strlen(key)) == 0)
            printf("Parent - %s says: %s", name, line);
    fclose(file);
}

/* The child: join the group, then take memory a megabyte at a time, touching every page. */
static _Noreturn void eat(const char *group)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", getpid());
    write_file(group, "cgroup.procs", pid);
    for (int megabytes = 1;; megabytes++) {
        char *block = malloc(1 << 20);
        if (block == NULL)
            die("malloc");
        memset(block, 1, 1 << 20); /* untouched pages cost nothing: touch them all */
        if (megabytes % 8 == 0) {
            printf("Child - %d MB taken\n", megabytes);
            fflush(stdout);
        }
    }
}

int main(int argc, char *argv[])
{
    long limit_mb = argc > 1 ? atol(argv[1]) : 32;
    const struct cgroup_kind *kind = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0
                                         ? &V2 : &V1;
    char group[256], limit[32];
    snprintf(group, sizeof group, "%s/labkit-sample-%d", kind->tree, getpid());
    snprintf(limit, sizeof limit, "%ld\n", limit_mb << 20);
    if (mkdir(group, 0755) == -1)
        die(group);
    write_file(group, kind->limit_file, limit);
    printf("Parent - cgroup %s made (%s), %s = %ld MB\n", group, kind->version,
           kind->limit_file, limit_mb);
    fflush(stdout);

    pid_t child = fork();
    if (child == -1)
        die("fork");
    if (child == 0)
        eat(group);
    int status;
    if (waitpid(child, &status, 0) == -1)
        die("waitpid");
    if (WIFSIGNALED(status))
        printf("Parent - the child was killed by signal %d (%s)\n", WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
        printf("Parent - the child exited with %d\n", WEXITSTATUS(status));
    print_line(group, kind->events_file, "oom_kill ");
    if (rmdir(group) == -1)
        die("rmdir");
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : 1;
}
