int main(void){return 0;} const char *demo_snapshot(void){return "";}
