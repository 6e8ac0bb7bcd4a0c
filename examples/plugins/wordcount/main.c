// An ordinary command-line program, unchanged: compiled to a WASI command it becomes a plugin with one
// callable function, `_start`, reading its input on stdin and writing its output to stdout (as WAGI did).
#include <ctype.h>
#include <stdio.h>

int main(void) {
  long lines = 0, words = 0, bytes = 0;
  int c, in_word = 0;
  while ((c = getchar()) != EOF) {
    bytes++;
    if (c == '\n') lines++;
    if (isspace(c)) in_word = 0;
    else if (!in_word) { in_word = 1; words++; }
  }
  if (bytes == 0) {
    fprintf(stderr, "wordcount: no input\n");
    return 2;
  }
  printf("%ld %ld %ld\n", lines, words, bytes);
  return 0;
}
