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
/* the encoder branch of eval (cmd_eval_encoder.c) */
struct cli_common;
int cli_is_encoder_dir(const char *path);
int cmd_eval_encoder(struct cli_common *c, const char *mode, int tokenizer_given);
int cmd_plot(int argc, char **argv);
int cmd_decode(int argc, char **argv);
#endif
