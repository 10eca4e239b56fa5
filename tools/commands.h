/* commands.h: every sprint subcommand. Each returns the process exit code. */
#ifndef SPRINT_TOOLS_COMMANDS_H
#define SPRINT_TOOLS_COMMANDS_H
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_decode(int argc, char **argv);
#endif
